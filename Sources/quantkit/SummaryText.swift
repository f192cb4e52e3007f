import Foundation
import QuantKitONNX

/// The summary `quantkit convert` prints: sizes, time, per-layer error, and every node it left
/// alone with the reason.
struct SummaryText {
    let report: ConversionReport
    let input: String
    let output: String
    let verbose: Bool
    /// Layers listed without --verbose: the ones with the lowest SQNR.
    static let worstShown = 10

    func render() -> String {
        var lines: [String] = []
        let quantized = report.quantized
        let skipped = report.skipped
        lines.append("Converted \(input) → \(output) in \(String(format: "%.1f", report.seconds)) s")
        lines.append("  quantized \(quantized.count) of \(report.layers.count) candidate nodes")
        for (settings, count) in Dictionary(grouping: quantized, by: { $0.settings ?? "" }).mapValues(\.count).sorted(by: { $0.value > $1.value }) {
            lines.append("    \(count) × \(settings)")
        }
        let before = quantized.reduce(0) { $0 + $1.bytesBefore }
        let after = quantized.reduce(0) { $0 + $1.bytesAfter }
        lines.append("  quantized weights: \(Self.bytes(before)) → \(Self.bytes(after))\(Self.ratio(before, after))")
        lines.append("  model on disk:     \(Self.bytes(report.inputBytes)) → \(Self.bytes(report.outputBytes))\(Self.ratio(report.inputBytes, report.outputBytes))")
        if report.opsetAfter != report.opsetBefore {
            lines.append("  opset raised \(report.opsetBefore) → \(report.opsetAfter); nodes upgraded: \(report.upgradedNodes.count)")
        }

        let measured = quantized.filter { $0.sqnrDB != nil }.sorted { $0.sqnrDB! < $1.sqnrDB! }
        if !measured.isEmpty {
            let mean = measured.reduce(0.0) { $0 + $1.sqnrDB! } / Double(measured.count)
            lines.append("  weight SQNR: mean \(Self.db(mean)), worst \(Self.db(measured[0].sqnrDB!)), best \(Self.db(measured.last!.sqnrDB!))")
            let shown = verbose ? measured : Array(measured.prefix(Self.worstShown))
            lines.append(verbose ? "  per layer:" : "  lowest SQNR (all layers: --verbose or --json):")
            let nameWidth = min(60, shown.map(\.node.count).max() ?? 0)
            for layer in shown {
                let name = layer.node.count > nameWidth ? "…" + layer.node.suffix(nameWidth - 1) : layer.node.padding(nameWidth)
                lines.append("    \(name)  \("\(layer.k)×\(layer.n)".padding(11))  \(Self.db(layer.sqnrDB!).padding(8))  \(layer.settings ?? "")")
            }
        }

        if !skipped.isEmpty {
            lines.append("  left alone (\(skipped.count)):")
            for (reason, layers) in Dictionary(grouping: skipped, by: { $0.skipped ?? "" }).sorted(by: { $0.value.count > $1.value.count }) {
                lines.append("    \(layers.count) × \(reason):")
                lines.append("      " + layers.map { $0.node.isEmpty ? "(unnamed \($0.opType))" : $0.node }.joined(separator: ", "))
            }
        }
        lines += report.notes.map { "  note: \($0)" }
        return lines.joined(separator: "\n")
    }

    static func json(_ report: ConversionReport, input: String, output: String) throws -> String {
        struct Document: Encodable {
            let input: String
            let output: String
            let report: ConversionReport
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // A layer quantized exactly has an infinite SQNR, which JSON has no number for.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = try encoder.encode(Document(input: input, output: output, report: report))
        return String(decoding: data, as: UTF8.self)
    }

    static func bytes(_ n: Int) -> String {
        if n >= 1 << 30 { return String(format: "%.2f GB", Double(n) / 1e9) }
        if n >= 1 << 20 { return String(format: "%.1f MB", Double(n) / 1e6) }
        if n >= 1 << 10 { return String(format: "%.1f kB", Double(n) / 1e3) }
        return "\(n) B"
    }

    static func ratio(_ before: Int, _ after: Int) -> String {
        after > 0 && before > 0 ? String(format: " (%.2f× smaller)", Double(before) / Double(after)) : ""
    }

    static func db(_ value: Double) -> String {
        value.isFinite ? String(format: "%.1f dB", value) : "exact"
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
