#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuantKit
@testable import QuantKitONNX
import XCTest

/// The folder of the checked-in fixtures (written by Fixtures/make_fixtures.py).
let fixtures: String = {
    let file = "\(#filePath)"
    return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
}()

func readBytes(_ path: String) throws -> [UInt8] {
    try FileIO.readAll(path: path, limit: Int(Int32.max))
}

func writeBytes(_ bytes: [UInt8], _ path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    bytes.withUnsafeBytes { precondition(write(fd, $0.baseAddress, $0.count) == $0.count) }
    close(fd)
}

func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// The names in a folder, without "." and "..".
func listing(_ folder: String) -> [String] {
    guard let dir = opendir(folder) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

final class ONNXModelTests: XCTestCase {
    var folder = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/quantkit-onnx-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        XCTAssertNotNil(made)
        folder = String(cString: template)
    }

    override func tearDownWithError() throws {
        for name in listing(folder) { unlink("\(folder)/\(name)") }
        rmdir(folder)
    }

    func assertError(_ status: QuantStatus, mentioning text: String, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let (actual, message): (QuantStatus, String)
            if let error = error as? QuantError {
                (actual, message) = (error.status, error.message)
            } else if let error = error as? ModelFileError {
                (actual, message) = (error.status, error.message)
            } else {
                return XCTFail("not a QuantError or ModelFileError: \(error)", file: file, line: line)
            }
            XCTAssertEqual(actual, status, message, file: file, line: line)
            XCTAssertTrue(message.contains(text), "'\(message)' does not mention '\(text)'", file: file, line: line)
        }
    }

    // MARK: Round trip

    func testRoundTripReproducesPythonBytes() throws {
        var written: [String] = []
        for name in ["tiny.onnx", "unknown_fields.onnx"] {
            let input = "\(fixtures)/\(name)"
            let original = try readBytes(input)
            XCTAssertGreaterThan(original.count, 1000, name)
            let model = try ONNXModel.load(path: input)
            XCTAssertEqual(try model.serializedBytes(), original, name)
            let output = "\(folder)/\(name)"
            try model.save(to: output)
            XCTAssertEqual(try readBytes(output), original, "\(name): save(to:) changed the bytes")
            written.append(name)
            XCTAssertEqual(listing(folder), written, "temporary files left behind")
        }
    }

    func testLoadedModelHasTheFixtureContent() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx").proto
        XCTAssertEqual(model.irVersion, 10)
        XCTAssertEqual(model.producerName, "quantkit-fixtures")
        XCTAssertEqual(model.opsetImport.map(\.domain), ["", "com.example", "local.fn", "com.microsoft"])
        XCTAssertEqual(model.metadataProps.map(\.value), ["MIT", "\u{2713} unicode"])
        XCTAssertEqual(model.graph.node.map(\.opType), ["MatMul", "Add", "If", "Custom", "Square"])
        XCTAssertEqual(model.graph.node[2].attribute.map(\.g.name), ["else_branch", "then_branch"])  // onnx.helper sorts attributes by name
        XCTAssertEqual(model.functions.map(\.name), ["Square"])
        let initializers = Dictionary(uniqueKeysWithValues: model.graph.initializer.map { ($0.name, $0) })
        XCTAssertEqual(initializers["ints"]?.int32Data, [-1, 0, Int32.max, Int32.min])
        XCTAssertEqual(initializers["shape"]?.int64Data, [-1, 3])
        XCTAssertEqual(initializers["W"]?.rawData.count, 4 * 3 * 4)
        XCTAssertEqual(initializers["B"]?.floatData.prefix(2), [0.5, -1.25])
        XCTAssertEqual(initializers["q4"]?.dataType, Int32(Onnx_TensorProto.DataType.int4.rawValue))
    }

    func testUnknownFieldsSurvive() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/unknown_fields.onnx").proto
        XCTAssertFalse(model.unknownFields.data.isEmpty)
        XCTAssertFalse(model.graph.unknownFields.data.isEmpty)
        XCTAssertFalse(model.graph.node[0].unknownFields.data.isEmpty)
    }

    func testEditedModelSavesAndLoads() throws {
        var model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        model.proto.producerName = "edited"
        let output = "\(folder)/edited.onnx"
        try model.save(to: output)
        let again = try ONNXModel.load(path: output)
        XCTAssertEqual(again.proto.producerName, "edited")
        // (The graph holds a NaN attribute, so compare bytes, not values.)
        let graphBytes: [UInt8] = try again.proto.graph.serializedBytes()
        XCTAssertEqual(graphBytes, try model.proto.graph.serializedBytes())
    }

    /// More models, named at run time: QUANTKIT_ONNX_ROUNDTRIP is a colon-separated list of .onnx
    /// files and folders (searched recursively for *.onnx), e.g. the onnx package's backend test
    /// data or a real exported model. Each must load and serialize back to its exact bytes.
    func testRoundTripOfModelsNamedInEnvironment() throws {
        guard let list = getenv("QUANTKIT_ONNX_ROUNDTRIP").map({ String(cString: $0) }), !list.isEmpty else {
            throw XCTSkip("set QUANTKIT_ONNX_ROUNDTRIP to round-trip more models")
        }
        var paths: [String] = []
        func walk(_ path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return XCTFail("\(path) does not exist") }
            if st.st_mode & S_IFMT == S_IFDIR {
                for name in listing(path) { walk("\(path)/\(name)") }
            } else if path.hasSuffix(".onnx") {
                paths.append(path)
            }
        }
        list.split(separator: ":").forEach { walk(String($0)) }
        var skipped = 0
        for path in paths {
            let original = try readBytes(path)
            let model: ONNXModel
            do {
                model = try ONNXModel.load(path: path)
            } catch let error as QuantError where error.status == .invalidModel && original.count < 64 {
                skipped += 1  // tiny files that are not models (some test data folders hold such)
                continue
            }
            XCTAssertEqual(try model.serializedBytes(), original, path)
        }
        print("round trip: \(paths.count - skipped) models byte-exact, \(skipped) skipped")
    }

    // MARK: Bad input

    func testMissingFileIsAnIOError() {
        let path = "\(folder)/does-not-exist.onnx"
        assertError(.io, mentioning: path) { _ = try ONNXModel.load(path: path) }
    }

    func testDirectoryIsAnIOError() {
        assertError(.io, mentioning: folder) { _ = try ONNXModel.load(path: folder) }
    }

    func testTruncatedFileIsAnInvalidModel() throws {
        let original = try readBytes("\(fixtures)/tiny.onnx")
        let path = "\(folder)/truncated.onnx"
        for length in [original.count / 2, original.count - 1, 40] {
            writeBytes(Array(original.prefix(length)), path)
            assertError(.invalidModel, mentioning: path) { _ = try ONNXModel.load(path: path) }
        }
    }

    func testEmptyAndNonProtobufFilesAreInvalidModels() {
        let path = "\(folder)/bad.onnx"
        for content in [[], Array("not a model\n".utf8), [UInt8](repeating: 0xFF, count: 64)] {
            writeBytes(content, path)
            assertError(.invalidModel, mentioning: path) { _ = try ONNXModel.load(path: path) }
        }
    }

    func testProtobufWithoutIRVersionIsAnInvalidModel() throws {
        var proto = Onnx_ModelProto()
        proto.producerName = "no ir_version"
        let path = "\(folder)/noir.onnx"
        writeBytes(try proto.serializedBytes(), path)
        assertError(.invalidModel, mentioning: "ir_version") { _ = try ONNXModel.load(path: path) }
    }

    // MARK: Saving

    func testSaveDoesNotOverwriteUnlessAsked() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        let path = "\(folder)/existing.onnx"
        let old = Array("precious old content".utf8)
        writeBytes(old, path)
        assertError(.io, mentioning: path) { try model.save(to: path) }
        XCTAssertEqual(try readBytes(path), old, "the existing file was modified")
        XCTAssertEqual(listing(folder), ["existing.onnx"], "temporary files left behind")

        try model.save(to: path, overwrite: true)
        XCTAssertEqual(try readBytes(path), try readBytes("\(fixtures)/tiny.onnx"))
        XCTAssertEqual(listing(folder), ["existing.onnx"])
    }

    func testOverwriteKeepsPermissions() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        let path = "\(folder)/mode.onnx"
        writeBytes([1, 2, 3], path)
        chmod(path, 0o640)
        try model.save(to: path, overwrite: true)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o640)
    }

    func testSaveIntoMissingFolderIsAnIOError() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        let path = "\(folder)/no/such/folder/out.onnx"
        assertError(.io, mentioning: path) { try model.save(to: path) }
    }

    func testSaveOntoDirectoryIsAnIOError() throws {
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        assertError(.io, mentioning: folder) { try model.save(to: folder, overwrite: true) }
    }

    func testSaveIntoReadOnlyFolderLeavesNothing() throws {
        guard getuid() != 0 else { throw XCTSkip("root ignores folder permissions") }
        let model = try ONNXModel.load(path: "\(fixtures)/tiny.onnx")
        let readOnly = "\(folder)/ro"
        XCTAssertEqual(mkdir(readOnly, 0o555), 0)
        defer { chmod(readOnly, 0o755); rmdir(readOnly) }
        assertError(.io, mentioning: readOnly) { try model.save(to: "\(readOnly)/out.onnx") }
        XCTAssertEqual(listing(readOnly), [])
    }
}
