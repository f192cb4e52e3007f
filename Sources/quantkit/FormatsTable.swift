import QuantKit

/// The `quantkit formats` table: bits per stored element, and bits per weight once the scales
/// (fp16, one per block) and zero points (asymmetric) are counted.
struct FormatsTable {
    let blockSize: Int

    func render() -> String {
        var rows = [["format", "bits", "bits/weight (sym)", "bits/weight (asym)", "description"]]
        for spec in FormatTable.all {
            rows.append([
                spec.name, "\(spec.bits)", bitsPerWeight(spec, asymmetric: false),
                spec.isInteger ? bitsPerWeight(spec, asymmetric: true) : "-", spec.description,
            ])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        let lines = rows.map { row in
            row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count) }
                .joined(separator: "  ")
        }
        let note = "scale overhead counted for fp16 scales, one per \(blockSize) weights (per tensor for fp8; none for fp16/bf16)"
        return (lines + ["", note]).joined(separator: "\n")
    }

    private func bitsPerWeight(_ spec: FormatSpec, asymmetric: Bool) -> String {
        var params = QuantParams(format: spec.format)
        params.blockSize = blockSize
        params.scheme = asymmetric ? .asymmetric : .symmetric
        params.scaleType = .f16
        let rows = 4096, cols = 4096
        guard let plan = try? QuantPlan(params: params, shape: [rows, cols]) else { return "?" }
        let bits = Double((plan.dataBytes + plan.scaleBytes + plan.zeroPointBytes) * 8) / Double(rows * cols)
        return String(format2: bits)
    }
}

extension String {
    /// Two decimals without Foundation.
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
