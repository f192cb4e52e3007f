import ArgumentParser
import Foundation
import QuantKit
import QuantKitONNX

/// The tool's exit codes: one per failure a script may want to tell apart. Documented in the
/// README; never renumbered.
enum ToolExit: Int32, CaseIterable {
    case success = 0
    case internalError = 1
    case unreadableInput = 2
    case invalidModel = 3
    case unsupported = 4
    case externalDataOutsideFolder = 5
    case externalDataMissing = 6
    case outputExists = 7
    case diskFull = 8
    case writeFailed = 9
    /// ArgumentParser's code for a bad command line (EX_USAGE).
    case usage = 64
}

/// Where a failure happened: the same status means different things when reading and writing.
enum Phase { case reading, converting, writing }

/// Prints `quantkit: error: <message>` and exits with the failure's code.
func fail(_ error: any Error, during phase: Phase) -> ExitCode {
    let (code, message) = classify(error, during: phase)
    printError("quantkit: error: \(message)")
    return ExitCode(code.rawValue)
}

func classify(_ error: any Error, during phase: Phase) -> (ToolExit, String) {
    if let error = error as? ModelFileError {
        switch error.kind {
        case .outputExists: return (.outputExists, error.message)
        case .diskFull: return (.diskFull, error.message)
        case .externalDataOutsideFolder: return (.externalDataOutsideFolder, error.message)
        case .externalDataMissing: return (.externalDataMissing, error.message)
        }
    }
    if let error = error as? QuantError {
        switch (error.status, phase) {
        case (.io, .reading): return (.unreadableInput, error.message)
        case (.io, .writing): return (.writeFailed, error.message)
        case (.invalidModel, _): return (.invalidModel, error.message)
        // A NaN or infinite weight: the model's values cannot be quantized.
        case (.nonFinite, .converting): return (.invalidModel, error.message)
        case (.unsupported, _): return (.unsupported, error.message)
        case (.invalidArgument, _): return (.usage, error.message)
        default: return (phase == .writing ? .writeFailed : .internalError, error.message)
        }
    }
    return (.internalError, "\(error)")
}

func printError(_ text: String) {
    var stderr = StandardError()
    print(text, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        fputs(string, stderrStream)
    }
}
