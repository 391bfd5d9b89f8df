// Placeholder sgemm: correct, not yet fast. Replaced by the packed BLIS-style implementation.
#include "kintsugi/gemm.h"

#include <string>
#include <vector>

#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {

namespace {
int64_t extent(int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; }

// Element (i, j) of op(X) for a matrix stored row-major with leading dimension ld.
inline float at(const float* x, bool trans, int64_t ld, int64_t i, int64_t j) { return trans ? x[j * ld + i] : x[i * ld + j]; }

// Row-major view of the arguments: column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T.
SgemmArgs as_row_major(const SgemmArgs& a) {
  if (a.layout == Layout::RowMajor) return a;
  SgemmArgs r = a;
  r.layout = Layout::RowMajor;
  r.m = a.n;
  r.n = a.m;
  r.a = a.b;
  r.lda = a.ldb;
  r.trans_a = a.trans_b;
  r.b = a.a;
  r.ldb = a.lda;
  r.trans_b = a.trans_a;
  return r;
}
}  // namespace

void check_sgemm(const SgemmArgs& g, int64_t a_len, int64_t b_len, int64_t c_len) {
  if (g.m < 0) throw_expected(ErrorKind::Range, "m >= 0", "m", std::to_string(g.m));
  if (g.n < 0) throw_expected(ErrorKind::Range, "n >= 0", "n", std::to_string(g.n));
  if (g.k < 0) throw_expected(ErrorKind::Range, "k >= 0", "k", std::to_string(g.k));
  bool row = g.layout == Layout::RowMajor;
  // Stored shape (rows x cols) of each operand in its own layout.
  int64_t a_rows = (g.trans_a == Transpose::No) ? g.m : g.k, a_cols = (g.trans_a == Transpose::No) ? g.k : g.m;
  int64_t b_rows = (g.trans_b == Transpose::No) ? g.k : g.n, b_cols = (g.trans_b == Transpose::No) ? g.n : g.k;
  auto check = [&](const char* name, const char* len_name, int64_t rows, int64_t cols, int64_t ld, int64_t len) {
    int64_t inner = row ? cols : rows, outer = row ? rows : cols;
    int64_t min_ld = inner > 1 ? inner : 1;
    if (ld < min_ld) throw_expected(ErrorKind::Range, std::string("a leading dimension >= ") + std::to_string(min_ld), name, std::to_string(ld));
    int64_t need = extent(outer, inner, ld);
    if (len < need)
      throw_expected(ErrorKind::Range, std::string("at least ") + std::to_string(need) + " elements", len_name, std::to_string(len));
  };
  check("lda", "a", a_rows, a_cols, g.lda, a_len);
  check("ldb", "b", b_rows, b_cols, g.ldb, b_len);
  check("ldc", "c", g.m, g.n, g.ldc, c_len);
}

void sgemm_reference(const SgemmArgs& args) {
  SgemmArgs g = as_row_major(args);
  bool ta = g.trans_a == Transpose::Yes, tb = g.trans_b == Transpose::Yes;
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) acc += double(at(g.a, ta, g.lda, i, p)) * double(at(g.b, tb, g.ldb, p, j));
      float& c = g.c[i * g.ldc + j];
      float ab = float(double(g.alpha) * acc);
      c = g.beta == 0.0f ? ab : ab + g.beta * c;
    }
}

void sgemm(const SgemmArgs& args) {
  SgemmArgs g = as_row_major(args);
  bool ta = g.trans_a == Transpose::Yes, tb = g.trans_b == Transpose::Yes;
  parallel_for(g.m, 4, [&](int64_t i0, int64_t i1) {
    std::vector<float> row(size_t(g.n));
    for (int64_t i = i0; i < i1; ++i) {
      std::fill(row.begin(), row.end(), 0.0f);
      for (int64_t p = 0; p < g.k; ++p) {
        float a = at(g.a, ta, g.lda, i, p);
        for (int64_t j = 0; j < g.n; ++j) row[size_t(j)] += a * at(g.b, tb, g.ldb, p, j);
      }
      float* c = g.c + i * g.ldc;
      for (int64_t j = 0; j < g.n; ++j) c[j] = g.beta == 0.0f ? g.alpha * row[size_t(j)] : g.alpha * row[size_t(j)] + g.beta * c[j];
    }
  });
}

class PackedMatrix {
 public:
  int64_t k = 0, n = 0;
  std::vector<float> data;  // row-major k x n
};

void PackedMatrixDeleter::operator()(PackedMatrix* p) const { delete p; }

PackedMatrixPtr pack_b(Layout layout, Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb) {
  PackedMatrixPtr p(new PackedMatrix);
  p->k = k;
  p->n = n;
  p->data.resize(size_t(k * n));
  bool t = (trans_b == Transpose::Yes) != (layout == Layout::ColMajor);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j) p->data[size_t(i * n + j)] = at(b, t, ldb, i, j);
  return p;
}

int64_t packed_rows(const PackedMatrix& p) { return p.k; }
int64_t packed_cols(const PackedMatrix& p) { return p.n; }

void sgemm_packed(const SgemmArgs& args, const PackedMatrix& packed) {
  SgemmArgs g = args;
  if (g.layout == Layout::ColMajor) {
    // Column-major A and C: C^T = B^T A^T with B^T = packed^T stored row-major n x k.
    throw Error(ErrorKind::Unsupported, "sgemm_packed with column-major A/C is not supported yet");
  }
  g.b = packed.data.data();
  g.ldb = packed.n;
  g.trans_b = Transpose::No;
  sgemm(g);
}

}  // namespace kintsugi
