/// ONNX MatMulInteger on operands whose zero points are already subtracted:
/// acc[m][n] = sum_k a[m][k] * bT[n][k], exact in int32 (|a|, |b| <= 255, so a product pair fits).
/// Plain loops over contiguous int16 rows, which the compiler vectorizes (pmaddwd); the packed VNNI
/// kernels serve the W8A8 path through `Matmul` with int8 weights.
public enum IntegerMatmul {
    public static func run(a: UnsafePointer<Int16>, bT: UnsafePointer<Int16>, m: Int, n: Int, k: Int, threads: Int,
                           into acc: UnsafeMutablePointer<Int32>) {
        Parallel.forEachChunk(count: n, threads: threads, minChunk: 4) { columns in
            for i in 0..<m {
                let row = a + i * k
                for j in columns {
                    let column = bT + j * k
                    var sum: Int32 = 0
                    for c in 0..<k { sum &+= Int32(row[c]) &* Int32(column[c]) }
                    acc[i * n + j] = sum
                }
            }
        }
    }
}
