// Reed–Solomon over GF(2^8): field arithmetic against carry-less multiplication, the MDS property of
// the generator, encode against naive loops, decode of every loss pattern, delta updates, every ISA
// path this CPU supports (byte-exact against the portable one), guard bytes and error paths.
#include <algorithm>
#include <cstring>
#include <string>

#include "harness.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/reed_solomon.h"
#include "kintsugi/threadpool.h"

using kintsugi::Isa;
using harness::IsaScope;
using harness::supported_isas;
using kintsugi::ReedSolomon;

namespace {

// Carry-less multiplication reduced by 0x11D: independent of the library's log/exp tables.
uint8_t slow_mul(uint8_t a, uint8_t b) {
  unsigned x = a, y = b, r = 0;
  while (y) {
    if (y & 1) r ^= x;
    y >>= 1;
    x <<= 1;
    if (x & 0x100) x ^= 0x11D;
  }
  return uint8_t(r);
}

constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xA5;

// Blocks of len bytes, each placed at its own misalignment inside a buffer with guard bytes behind.
struct Blocks {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<uint8_t*> ptr;
  size_t len;
  Blocks(int n, size_t len_, uint32_t seed) : len(len_) {
    std::mt19937 rng(seed);
    for (int i = 0; i < n; ++i) {
      const size_t off = size_t(i * 5 + 3) % 17;
      storage.emplace_back(off + len + kGuard, kGuardByte);
      uint8_t* p = storage.back().data() + off;
      for (size_t j = 0; j < len; ++j) p[j] = uint8_t(rng());
      ptr.push_back(p);
    }
  }
  bool guards_intact() const {
    for (size_t i = 0; i < ptr.size(); ++i)
      for (size_t g = 0; g < kGuard; ++g)
        if (ptr[i][len + g] != kGuardByte) return false;
    return true;
  }
};

// Naive parity of data blocks from the public coefficients, using slow_mul.
std::vector<std::vector<uint8_t>> naive_parity(const ReedSolomon& rs, const uint8_t* const* data, size_t len) {
  std::vector<std::vector<uint8_t>> out(size_t(rs.r()), std::vector<uint8_t>(len, 0));
  for (int p = 0; p < rs.r(); ++p)
    for (int j = 0; j < rs.k(); ++j) {
      const uint8_t c = rs.coefficient(p, j);
      for (size_t i = 0; i < len; ++i) out[size_t(p)][i] ^= slow_mul(c, data[j][i]);
    }
  return out;
}

// Calls fn(lost_mask) for every subset of n blocks with at most e members.
template <typename F> void for_each_loss(int n, int e, const F& fn) {
  for (uint32_t mask = 0; mask < (1u << n); ++mask)
    if (__builtin_popcount(mask) <= e) fn(mask);
}

}  // namespace

TEST(field_arithmetic_matches_carryless_multiplication) {
  int bad = 0;
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b)
      if (kintsugi::gf::mul(uint8_t(a), uint8_t(b)) != slow_mul(uint8_t(a), uint8_t(b))) ++bad;
  CHECK(bad == 0) << bad << " wrong products";
  for (int a = 1; a < 256; ++a) {
    const uint8_t ia = kintsugi::gf::inv(uint8_t(a));
    CHECK(slow_mul(uint8_t(a), ia) == 1) << "inverse of " << a;
    CHECK(kintsugi::gf::exp(kintsugi::gf::log(uint8_t(a))) == a) << "exp(log(" << a << "))";
    CHECK(kintsugi::gf::div(uint8_t(a), uint8_t(a)) == 1);
  }
  CHECK(kintsugi::gf::exp(0) == 1 && kintsugi::gf::exp(1) == 2 && kintsugi::gf::exp(8) == 0x1D);
  CHECK(kintsugi::gf::exp(255) == 1 && kintsugi::gf::exp(-1) == kintsugi::gf::inv(2));
  CHECK(kintsugi::gf::add(0x53, 0xCA) == (0x53 ^ 0xCA));
  CHECK_THROWS_KIND(kintsugi::gf::inv(0), kintsugi::ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::gf::div(3, 0), kintsugi::ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::gf::log(0), kintsugi::ErrorKind::Range);
}

TEST(matrix_inversion_gives_identity_and_detects_singular) {
  std::mt19937 rng(7);
  for (int n : {1, 2, 5, 16, 40}) {
    std::vector<uint8_t> a(size_t(n * n)), inv(size_t(n * n));
    int tries = 0;
    do {
      for (auto& x : a) x = uint8_t(rng());
      ++tries;
    } while (!kintsugi::gf::invert_matrix(a.data(), n, inv.data()) && tries < 10);
    bool identity = true;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        uint8_t s = 0;
        for (int t = 0; t < n; ++t) s ^= slow_mul(a[size_t(i * n + t)], inv[size_t(t * n + j)]);
        if (s != (i == j ? 1 : 0)) identity = false;
      }
    CHECK(identity) << "A * inv(A) != I for n = " << n;
  }
  // Two equal rows: singular.
  const uint8_t s[9] = {1, 2, 3, 4, 5, 6, 1, 2, 3};
  uint8_t out[9];
  CHECK(!kintsugi::gf::invert_matrix(s, 3, out));
  const uint8_t z[4] = {0, 0, 0, 0};
  CHECK(!kintsugi::gf::invert_matrix(z, 2, out));
}

// Every k x k submatrix of [I; P] must be invertible (the code is MDS): all k-subsets of the k + r
// rows for k <= 16, r <= 4; random subsets for large k.
TEST(every_k_by_k_submatrix_of_the_generator_is_invertible) {
  int singular = 0, checked = 0;
  auto check_rows = [&](const ReedSolomon& rs, const std::vector<int>& rows) {
    const int k = rs.k();
    std::vector<uint8_t> b(size_t(k * k), 0), inv(size_t(k * k));
    for (int i = 0; i < k; ++i) {
      const int row = rows[size_t(i)];
      if (row < k) b[size_t(i * k + row)] = 1;
      else
        for (int j = 0; j < k; ++j) b[size_t(i * k + j)] = rs.coefficient(row - k, j);
    }
    ++checked;
    if (!kintsugi::gf::invert_matrix(b.data(), k, inv.data())) {
      ++singular;
      std::string r;
      for (int x : rows) r += std::to_string(x) + " ";
      CHECK(false) << "singular rows " << r << "for RS(" << k << "+" << rs.r() << ")";
    }
  };
  for (int r = 1; r <= 4; ++r)
    for (int k = 1; k <= 16; ++k) {
      ReedSolomon rs(k, r);
      for (int j = 0; j < k; ++j) CHECK(rs.coefficient(0, j) == 1) << "row 0 is not all ones";
      for (int p = 0; p < r; ++p) CHECK(rs.coefficient(p, 0) == 1) << "column 0 is not all ones";
      const int n = k + r;
      for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        if (__builtin_popcount(mask) != k) continue;
        std::vector<int> rows;
        for (int i = 0; i < n; ++i)
          if (mask & (1u << i)) rows.push_back(i);
        check_rows(rs, rows);
      }
    }
  std::mt19937 rng(11);
  for (int k : {32, 100, 251}) {
    ReedSolomon rs(k, 4);
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<int> all(size_t(k + 4));
      for (int i = 0; i < k + 4; ++i) all[size_t(i)] = i;
      std::shuffle(all.begin(), all.end(), rng);
      all.resize(size_t(k));
      std::sort(all.begin(), all.end());
      check_rows(rs, all);
    }
  }
  CHECK(singular == 0) << singular << " of " << checked << " submatrices singular";
}

TEST(encode_matches_naive_on_every_isa_with_unaligned_blocks) {
  const size_t lengths[] = {0, 1, 15, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 4097};
  const int shapes[][2] = {{1, 1}, {4, 2}, {3, 4}, {10, 4}, {5, 3}, {17, 1}, {2, 4}};
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (auto& shape : shapes) {
      ReedSolomon rs(shape[0], shape[1]);
      for (size_t len : lengths) {
        Blocks data(rs.k(), len, uint32_t(len * 31 + size_t(shape[0]))), parity(rs.r(), len, 99);
        rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, parity.ptr.data());
        auto want = naive_parity(rs, data.ptr.data(), len);
        int bad = 0;
        for (int p = 0; p < rs.r(); ++p)
          if (len && std::memcmp(parity.ptr[size_t(p)], want[size_t(p)].data(), len) != 0) ++bad;
        CHECK(bad == 0) << bad << " wrong parity blocks, isa " << kintsugi::isa_name(isa) << " RS(" << rs.k() << "+"
                        << rs.r() << ") len " << len;
        CHECK(parity.guards_intact()) << "write past the end, isa " << kintsugi::isa_name(isa) << " len " << len;
      }
    }
  }
}

// Every ISA gives the same bytes as the portable kernel, also on large blocks split over the pool.
TEST(isa_paths_are_byte_exact_with_portable_on_large_blocks) {
  const size_t len = (size_t(1) << 20) + 3;
  for (auto shape : {std::pair<int, int>{4, 2}, {10, 4}}) {
    ReedSolomon rs(shape.first, shape.second);
    Blocks data(rs.k(), len, 5);
    Blocks ref(rs.r(), len, 6);
    {
      IsaScope scope(Isa::Portable);
      rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, ref.ptr.data());
    }
    // Spot-check the portable result itself against the naive formula on a few positions.
    for (size_t i : {size_t(0), size_t(12345), len / 2, len - 1}) {
      for (int p = 0; p < rs.r(); ++p) {
        uint8_t want = 0;
        for (int j = 0; j < rs.k(); ++j) want ^= slow_mul(rs.coefficient(p, j), data.ptr[size_t(j)][i]);
        CHECK(ref.ptr[size_t(p)][i] == want) << "portable parity wrong at " << i;
      }
    }
    for (Isa isa : supported_isas()) {
      IsaScope scope(isa);
      Blocks out(rs.r(), len, 7);
      rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, out.ptr.data());
      for (int p = 0; p < rs.r(); ++p)
        CHECK(std::memcmp(out.ptr[size_t(p)], ref.ptr[size_t(p)], len) == 0)
            << "isa " << kintsugi::isa_name(isa) << " differs from portable, RS(" << rs.k() << "+" << rs.r() << ")";
      CHECK(out.guards_intact());
    }
  }
}

// Encode, then for every set of at most r lost blocks (data and parity), wipe them and decode.
TEST(decode_recovers_every_combination_of_up_to_r_lost_blocks) {
  const int shapes[][2] = {{4, 2}, {10, 4}, {1, 1}, {3, 4}, {6, 3}, {1, 4}};
  const size_t lengths[] = {0, 1, 31, 33, 4097};
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (auto& shape : shapes) {
      ReedSolomon rs(shape[0], shape[1]);
      const int n = rs.k() + rs.r();
      for (size_t len : lengths) {
        Blocks all(n, len, uint32_t(len + 1000 * size_t(n)));
        rs.encode(const_cast<const uint8_t* const*>(all.ptr.data()), len, all.ptr.data() + rs.k());
        std::vector<std::vector<uint8_t>> original;
        for (int i = 0; i < n; ++i) original.emplace_back(all.ptr[size_t(i)], all.ptr[size_t(i)] + len);
        int failed = 0, patterns = 0;
        for_each_loss(n, rs.r(), [&](uint32_t mask) {
          bool present[64];
          for (int i = 0; i < n; ++i) {
            present[i] = !(mask & (1u << i));
            if (!present[i] && len) std::memset(all.ptr[size_t(i)], 0xEE, len);
          }
          rs.decode(all.ptr.data(), present, len);
          ++patterns;
          for (int i = 0; i < n; ++i)
            if (len && std::memcmp(all.ptr[size_t(i)], original[size_t(i)].data(), len) != 0) {
              if (failed++ < 3) {
                CHECK(false) << "block " << i << " wrong after losing mask 0x" << std::hex << mask << std::dec
                             << ", isa " << kintsugi::isa_name(isa) << " RS(" << rs.k() << "+" << rs.r() << ") len "
                             << len;
              }
              std::memcpy(all.ptr[size_t(i)], original[size_t(i)].data(), len);
            }
        });
        CHECK(failed == 0) << failed << " of " << patterns << " loss patterns failed";
        CHECK(all.guards_intact()) << "write past the end in decode";
      }
    }
  }
}

TEST(decode_of_large_blocks_on_every_isa) {
  const size_t len = (size_t(1) << 20) + 3;
  ReedSolomon rs(4, 2);
  const int n = 6;
  Blocks all(n, len, 77);
  rs.encode(const_cast<const uint8_t* const*>(all.ptr.data()), len, all.ptr.data() + 4);
  std::vector<std::vector<uint8_t>> original;
  for (int i = 0; i < n; ++i) original.emplace_back(all.ptr[size_t(i)], all.ptr[size_t(i)] + len);
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (uint32_t mask : {0x3u, 0x21u, 0x30u, 0x6u, 0x12u}) {
      bool present[6];
      for (int i = 0; i < n; ++i) {
        present[i] = !(mask & (1u << i));
        if (!present[i]) std::memset(all.ptr[size_t(i)], 0, len);
      }
      rs.decode(all.ptr.data(), present, len);
      for (int i = 0; i < n; ++i) {
        CHECK(std::memcmp(all.ptr[size_t(i)], original[size_t(i)].data(), len) == 0)
            << "block " << i << " wrong, mask " << mask << " isa " << kintsugi::isa_name(isa);
        std::memcpy(all.ptr[size_t(i)], original[size_t(i)].data(), len);
      }
    }
  }
  CHECK(all.guards_intact());
}

TEST(delta_update_equals_reencode) {
  const size_t lengths[] = {0, 1, 31, 33, 4097, (size_t(1) << 20) + 3};
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (auto shape : {std::pair<int, int>{4, 2}, {10, 4}, {1, 1}, {3, 4}}) {
      ReedSolomon rs(shape.first, shape.second);
      for (size_t len : lengths) {
        if (len > 5000 && shape.first != 10) continue;  // one large shape covers the pool split
        Blocks data(rs.k(), len, uint32_t(len + 3)), parity(rs.r(), len, 4), fresh(rs.r(), len, 5);
        rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, parity.ptr.data());
        std::mt19937 rng{uint32_t(len)};
        for (int idx : {0, rs.k() - 1, rs.k() / 2}) {
          std::vector<uint8_t> delta(len + 1);  // +1: a misaligned view
          uint8_t* d = delta.data() + 1;
          for (size_t i = 0; i < len; ++i) {
            const uint8_t nv = uint8_t(rng());
            d[i] = uint8_t(data.ptr[size_t(idx)][i] ^ nv);
            data.ptr[size_t(idx)][i] = nv;
          }
          rs.update_parity(idx, d, len, parity.ptr.data());
        }
        rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, fresh.ptr.data());
        for (int p = 0; p < rs.r(); ++p)
          CHECK(len == 0 || std::memcmp(parity.ptr[size_t(p)], fresh.ptr[size_t(p)], len) == 0)
              << "updated parity " << p << " differs from re-encode, isa " << kintsugi::isa_name(isa) << " RS("
              << rs.k() << "+" << rs.r() << ") len " << len;
        CHECK(parity.guards_intact());
      }
    }
  }
}

TEST(single_thread_and_pool_give_the_same_bytes) {
  const size_t len = (size_t(3) << 20) + 17;
  ReedSolomon rs(8, 3);
  Blocks data(8, len, 21), a(3, len, 0), b(3, len, 0);
  const int threads = kintsugi::num_threads();
  kintsugi::set_num_threads(1);
  rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, a.ptr.data());
  kintsugi::set_num_threads(std::max(2, threads));
  rs.encode(const_cast<const uint8_t* const*>(data.ptr.data()), len, b.ptr.data());
  kintsugi::set_num_threads(threads);
  for (int p = 0; p < 3; ++p) CHECK(std::memcmp(a.ptr[size_t(p)], b.ptr[size_t(p)], len) == 0) << "parity " << p;
}

TEST(errors_are_typed_and_say_what_was_expected) {
  using kintsugi::ErrorKind;
  CHECK_THROWS_KIND(ReedSolomon(0, 2), ErrorKind::Range);
  CHECK_THROWS_KIND(ReedSolomon(-1, 2), ErrorKind::Range);
  CHECK_THROWS_KIND(ReedSolomon(4, 0), ErrorKind::Range);
  CHECK_THROWS_KIND(ReedSolomon(4, 5), ErrorKind::Range);
  CHECK_THROWS_KIND(ReedSolomon(252, 4), ErrorKind::Range);
  ReedSolomon ok(251, 4);
  CHECK(ok.k() == 251 && ok.r() == 4 && ok.parity_matrix().size() == 251 * 4);

  ReedSolomon rs(4, 2);
  std::vector<uint8_t> buf(6 * 8, 1);
  uint8_t* blocks[6];
  for (int i = 0; i < 6; ++i) blocks[i] = buf.data() + 8 * i;
  bool present[6] = {false, true, false, true, false, true};
  std::string message;
  try {
    rs.decode(blocks, present, 8);
  } catch (const kintsugi::Error& e) {
    message = e.what();
    CHECK(e.kind() == ErrorKind::Range);
  }
  CHECK(message == "Expected at most 2 lost blocks for RS(4+2) decode but received 3 lost (blocks 0, 2, 4)")
      << "message was: " << message;
  CHECK_THROWS_KIND(rs.decode(blocks, present, 0), ErrorKind::Range);  // too many lost even when empty
  CHECK_THROWS_KIND(rs.decode(blocks, nullptr, 8), ErrorKind::Type);
  bool two_lost[6] = {false, true, true, true, false, true};
  CHECK_THROWS_KIND(rs.decode(nullptr, two_lost, 8), ErrorKind::Type);
  uint8_t* with_null[6] = {nullptr, blocks[1], blocks[2], blocks[3], blocks[4], blocks[5]};
  CHECK_THROWS_KIND(rs.decode(with_null, two_lost, 8), ErrorKind::Type);

  const uint8_t* data[4] = {blocks[0], blocks[1], blocks[2], nullptr};
  uint8_t* parity[2] = {blocks[4], blocks[5]};
  CHECK_THROWS_KIND(rs.encode(data, 8, parity), ErrorKind::Type);
  CHECK_THROWS_KIND(rs.encode(nullptr, 8, parity), ErrorKind::Type);
  data[3] = blocks[3];
  CHECK_THROWS_KIND(rs.encode(data, 8, nullptr), ErrorKind::Type);
  rs.encode(nullptr, 0, nullptr);  // len 0: nothing to read or write

  CHECK_THROWS_KIND(rs.update_parity(4, blocks[0], 8, parity), ErrorKind::Range);
  CHECK_THROWS_KIND(rs.update_parity(-1, blocks[0], 8, parity), ErrorKind::Range);
  CHECK_THROWS_KIND(rs.update_parity(0, nullptr, 8, parity), ErrorKind::Type);
  uint8_t* bad_parity[2] = {blocks[4], nullptr};
  CHECK_THROWS_KIND(rs.update_parity(0, blocks[0], 8, bad_parity), ErrorKind::Type);
}

TEST_MAIN()
