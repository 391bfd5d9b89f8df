// Parity coding on every ISA path this CPU supports (set_isa_limit), against naive loops.
//
// XOR is bit-exact. Float sums accumulate in double and round once, so for the parity
// |P - sum c_i b_i| <= 2^-24 |P|, and a decoded block b_m = (P - sum_{i != m} c_i b_i) / c_m is
// within 2^-24 (|P| / |c_m| + |b_m|) of the original; the tests allow twice that per element.
#include <cstring>
#include <limits>

#include "harness.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/parity.h"

using kintsugi::Isa;
using harness::IsaScope;
using harness::supported_isas;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

const size_t kLengths[] = {0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000, 4096 + 13};

}  // namespace

TEST(xor_encode_matches_naive_on_every_isa_with_unaligned_blocks) {
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    uint32_t seed = 1;
    for (int k : {1, 2, 3, 5, 16})
      for (size_t len : kLengths) {
        // Each block (and the parity) starts at a different misalignment inside its own buffer.
        std::vector<std::vector<uint8_t>> storage;
        std::vector<const uint8_t*> blocks;
        for (int i = 0; i < k; ++i) storage.push_back(random_bytes(len + 16, seed++));
        for (int i = 0; i < k; ++i) blocks.push_back(storage[size_t(i)].data() + (i * 3 + int(len)) % 9);
        std::vector<uint8_t> parity_buf(len + 80, 0xA5);
        const size_t po = (len + size_t(k)) % 13;
        uint8_t* parity = parity_buf.data() + po;
        kintsugi::xor_encode(blocks.data(), k, len, parity);
        size_t bad = 0;
        for (size_t j = 0; j < len; ++j) {
          uint8_t want = 0;
          for (int i = 0; i < k; ++i) want ^= blocks[size_t(i)][j];
          bad += parity[j] != want;
        }
        CHECK(bad == 0) << kintsugi::isa_name(isa) << " k=" << k << " len=" << len << ": " << bad << " wrong bytes";
        bool guards = true;
        for (size_t j = 0; j < po; ++j) guards &= parity_buf[j] == 0xA5;
        for (size_t j = po + len; j < parity_buf.size(); ++j) guards &= parity_buf[j] == 0xA5;
        CHECK(guards) << kintsugi::isa_name(isa) << " wrote outside the parity, k=" << k << " len=" << len;

        // Decoding a lost block is the same call over the parity and the survivors: exact.
        if (k >= 2) {
          const int lost = int(len % size_t(k));
          std::vector<const uint8_t*> survivors = {parity};
          for (int i = 0; i < k; ++i)
            if (i != lost) survivors.push_back(blocks[size_t(i)]);
          std::vector<uint8_t> recovered(len + 1);
          kintsugi::xor_encode(survivors.data(), k, len, recovered.data() + 1);
          CHECK(len == 0 || std::memcmp(recovered.data() + 1, blocks[size_t(lost)], len) == 0)
              << kintsugi::isa_name(isa) << " decode k=" << k << " len=" << len;
        }
      }
  }
}

TEST(xor_into_applies_and_reverts_a_delta) {
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (size_t len : kLengths) {
      std::vector<uint8_t> dst_buf = random_bytes(len + 8, 5), src_buf = random_bytes(len + 8, 6);
      uint8_t* dst = dst_buf.data() + 3;
      const uint8_t* src = src_buf.data() + 5;
      std::vector<uint8_t> original(dst, dst + len), want(len);
      for (size_t j = 0; j < len; ++j) want[j] = uint8_t(original[j] ^ src[j]);
      const uint8_t after_end = dst_buf[3 + len];
      kintsugi::xor_into(dst, src, len);
      CHECK(std::equal(want.begin(), want.end(), dst)) << kintsugi::isa_name(isa) << " len=" << len;
      CHECK(dst_buf[3 + len] == after_end) << "wrote past dst, len=" << len;
      kintsugi::xor_into(dst, src, len);
      CHECK(std::equal(original.begin(), original.end(), dst)) << kintsugi::isa_name(isa) << " revert len=" << len;
    }
  }
}

TEST(xor_parity_may_alias_a_block) {
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    std::vector<uint8_t> a = random_bytes(1001, 7), b = random_bytes(1001, 8), c = random_bytes(1001, 9);
    std::vector<uint8_t> want(1001);
    for (size_t j = 0; j < want.size(); ++j) want[j] = uint8_t(a[j] ^ b[j] ^ c[j]);
    const uint8_t* blocks[3] = {a.data(), b.data(), c.data()};
    kintsugi::xor_encode(blocks, 3, a.size(), b.data());  // parity over b itself
    CHECK(b == want) << kintsugi::isa_name(isa);
  }
}

TEST(k_zero_and_k_one) {
  std::vector<uint8_t> block = random_bytes(77, 3), parity(77, 1);
  const uint8_t* blocks[1] = {block.data()};
  kintsugi::xor_encode(blocks, 1, block.size(), parity.data());
  CHECK(parity == block);
  kintsugi::xor_encode(nullptr, 0, parity.size(), parity.data());
  CHECK(parity == std::vector<uint8_t>(77, 0));
  kintsugi::xor_encode(nullptr, 3, 0, nullptr);  // len 0: nothing to touch

  std::vector<float> f = harness::random_floats(33, 4), out(33, 9.0f);
  const float* fb[1] = {f.data()};
  const float two = 2.0f;
  kintsugi::sum_encode(fb, &two, 1, f.size(), out.data());
  for (size_t j = 0; j < f.size(); ++j) CHECK(out[j] == 2.0f * f[j]);
  kintsugi::sum_encode(nullptr, nullptr, 0, out.size(), out.data());
  CHECK(out == std::vector<float>(33, 0.0f));
  // Decoding with no survivors: out = parity / missing.
  std::vector<float> rec(33);
  std::vector<float> p = harness::random_floats(33, 5);
  kintsugi::sum_decode(p.data(), nullptr, nullptr, 0, 4.0f, p.size(), rec.data());
  for (size_t j = 0; j < p.size(); ++j) CHECK(rec[j] == p[j] / 4.0f);
}

TEST(sum_encode_and_decode_on_every_isa) {
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    uint32_t seed = 100;
    for (int k : {1, 2, 3, 4, 9})
      for (size_t len : {size_t(0), size_t(1), size_t(5), size_t(16), size_t(17), size_t(511), size_t(512), size_t(513),
                         size_t(2000)})
        for (bool ones : {true, false}) {
          std::vector<std::vector<float>> storage;
          std::vector<const float*> blocks;
          for (int i = 0; i < k; ++i) storage.push_back(harness::random_floats(len + 4, seed++, -10.0f, 10.0f));
          for (int i = 0; i < k; ++i) blocks.push_back(storage[size_t(i)].data() + (i % 3));  // unaligned
          std::vector<float> coeffs = harness::random_floats(size_t(k), seed++, 0.5f, 3.0f);
          if (!ones) coeffs[0] = -coeffs[0];
          const float* c = ones ? nullptr : coeffs.data();
          std::vector<float> parity(len + 1, 0.0f);
          parity[len] = 42.0f;
          kintsugi::sum_encode(blocks.data(), c, k, len, parity.data());
          CHECK(parity[len] == 42.0f) << "wrote past the parity";
          int bad = 0;
          for (size_t j = 0; j < len; ++j) {
            double want = 0;
            for (int i = 0; i < k; ++i) want += double(ones ? 1.0f : coeffs[size_t(i)]) * double(blocks[size_t(i)][j]);
            if (std::fabs(double(parity[j]) - want) > 1.2e-7 * std::fabs(want)) ++bad;
          }
          CHECK(bad == 0) << kintsugi::isa_name(isa) << " sum_encode k=" << k << " len=" << len << ": " << bad;

          // Lose each block in turn and recover it from the parity and the rest.
          for (int lost = 0; lost < k; ++lost) {
            std::vector<const float*> avail;
            std::vector<float> avail_coeffs;
            for (int i = 0; i < k; ++i)
              if (i != lost) {
                avail.push_back(blocks[size_t(i)]);
                avail_coeffs.push_back(ones ? 1.0f : coeffs[size_t(i)]);
              }
            const float missing = ones ? 1.0f : coeffs[size_t(lost)];
            std::vector<float> rec(len + 1, 0.0f);
            rec[len] = 43.0f;
            kintsugi::sum_decode(parity.data(), avail.data(), ones ? nullptr : avail_coeffs.data(), k - 1, missing, len,
                                 rec.data());
            CHECK(rec[len] == 43.0f) << "wrote past the output";
            int wrong = 0;
            for (size_t j = 0; j < len; ++j) {
              const double orig = blocks[size_t(lost)][j];
              const double tol = 2.0 * 0x1p-24 * (std::fabs(double(parity[j])) / std::fabs(double(missing)) + std::fabs(orig));
              if (std::fabs(double(rec[j]) - orig) > tol) ++wrong;
            }
            CHECK(wrong == 0) << kintsugi::isa_name(isa) << " sum_decode k=" << k << " len=" << len << " lost=" << lost;
          }
        }
  }
}

TEST(large_blocks_take_the_parallel_path) {
  const size_t len = size_t(3) << 20;  // 4 blocks + parity: 15 MiB touched
  std::vector<std::vector<uint8_t>> storage;
  for (int i = 0; i < 4; ++i) storage.push_back(random_bytes(len + 1, 50 + uint32_t(i)));
  const uint8_t* blocks[4] = {storage[0].data() + 1, storage[1].data(), storage[2].data() + 1, storage[3].data()};
  std::vector<uint8_t> parity(len), naive(len);
  kintsugi::xor_encode(blocks, 4, len, parity.data());
  for (size_t j = 0; j < len; ++j) naive[j] = uint8_t(blocks[0][j] ^ blocks[1][j] ^ blocks[2][j] ^ blocks[3][j]);
  CHECK(parity == naive);

  const size_t flen = (size_t(1) << 20) + 3;
  std::vector<std::vector<float>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(harness::random_floats(flen, 60 + uint32_t(i)));
  const float* fb[3] = {fs[0].data(), fs[1].data(), fs[2].data()};
  const float coeffs[3] = {1.0f, 2.0f, -0.5f};
  std::vector<float> p(flen), rec(flen);
  kintsugi::sum_encode(fb, coeffs, 3, flen, p.data());
  const float* avail[2] = {fs[0].data(), fs[2].data()};
  const float avail_c[2] = {1.0f, -0.5f};
  kintsugi::sum_decode(p.data(), avail, avail_c, 2, 2.0f, flen, rec.data());
  size_t wrong = 0;
  for (size_t j = 0; j < flen; ++j) {
    double want = double(fs[0][j]) + 2.0 * double(fs[1][j]) - 0.5 * double(fs[2][j]);
    wrong += std::fabs(double(p[j]) - want) > 1.2e-7 * std::fabs(want);
    wrong += std::fabs(double(rec[j]) - fs[1][j]) > 2.0 * 0x1p-24 * (std::fabs(double(p[j])) / 2.0 + std::fabs(fs[1][j]));
  }
  CHECK(wrong == 0) << wrong;
}

TEST(bad_arguments_raise_errors) {
  using kintsugi::ErrorKind;
  uint8_t a[4] = {1, 2, 3, 4}, p[4];
  const uint8_t* with_null[2] = {a, nullptr};
  CHECK_THROWS_KIND(kintsugi::xor_encode(with_null, -1, 4, p), ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::xor_encode(nullptr, 2, 4, p), ErrorKind::Type);
  try {
    kintsugi::xor_encode(with_null, 2, 4, p);
    CHECK(false) << "no exception";
  } catch (const kintsugi::Error& e) {
    CHECK(e.kind() == ErrorKind::Type);
    CHECK(std::string(e.what()) == "Expected a block for blocks[1] but received null") << e.what();
  }
  CHECK_THROWS_KIND(kintsugi::xor_into(nullptr, a, 4), ErrorKind::Type);
  float f[4] = {1, 2, 3, 4}, out[4];
  const float* fb[1] = {f};
  CHECK_THROWS_KIND(kintsugi::sum_decode(f, fb, nullptr, 1, 0.0f, 4, out), ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::sum_decode(f, fb, nullptr, 1, std::numeric_limits<float>::infinity(), 4, out),
                    ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::sum_encode(fb, nullptr, 1, 4, nullptr), ErrorKind::Type);
}

TEST_MAIN()
