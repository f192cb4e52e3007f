import ArgumentParser
import QuantKit

@main
struct QuantKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantkit",
        abstract: "Quantize LLM weights to low-bit formats.",
        version: "quantkit \(QuantKitInfo.version) (kernels: \(Runtime.kernelVariant.name))",
        subcommands: [ConvertCommand.self, InspectCommand.self, FormatsCommand.self])
}

struct FormatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "formats",
        abstract: "List every weight format with its storage cost.")

    @Option(help: "Block size used to count the scale overhead.")
    var blockSize: Int = 32

    func run() throws {
        guard blockSize >= 1 else { throw ValidationError("--block-size must be at least 1") }
        print(FormatsTable(blockSize: blockSize).render())
    }
}
