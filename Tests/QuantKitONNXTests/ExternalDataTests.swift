#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import QuantKit
@testable import QuantKitONNX
import XCTest

#if canImport(Glibc)
let RLIMIT_FSIZE_ID = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#else
let RLIMIT_FSIZE_ID = RLIMIT_FSIZE
#endif

/// External data (tensors in side files) and large tensors left in the mapped model file, checked
/// against files Python's `onnx` wrote (Fixtures/make_external_fixtures.py).
final class ExternalDataTests: XCTestCase {
    let external = "\(fixtures)/external"
    var folder = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/quantkit-extdata-tests-XXXXXX".utf8CString)
        XCTAssertNotNil(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) })
        folder = String(cString: template)
    }

    override func tearDownWithError() throws {
        removeTree(folder)
    }

    func removeTree(_ path: String) {
        var st = stat()
        if lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
            for name in listing(path) { removeTree("\(path)/\(name)") }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    func copy(_ from: String, _ to: String) throws {
        writeBytes(try readBytes(from), to)
    }

    func assertFails(_ kind: ModelFileError.Kind, mentioning text: String, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? ModelFileError else { return XCTFail("not a ModelFileError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.kind, kind, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not mention '\(text)'", file: file, line: line)
        }
    }

    func assertFails(_ status: QuantStatus, mentioning text: String, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? QuantError else { return XCTFail("not a QuantError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not mention '\(text)'", file: file, line: line)
        }
    }

    func initializer(_ model: ONNXModel, _ name: String) throws -> Onnx_TensorProto {
        try XCTUnwrap(model.proto.graph.initializer.first { $0.name == name })
    }

    // MARK: Round trips, byte-exact against Python

    func testExternalTensorsReadPythonsBytes() throws {
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        let inline = try ONNXModel.load(path: "\(external)/inline.onnx", mappingTensorsFrom: Int.max)
        let reader = try XCTUnwrap(model.dataReader)
        for name in ["W", "W2"] {
            let tensor = try initializer(model, name)
            XCTAssertEqual(tensor.dataLocation, .external, name)
            XCTAssertEqual(Array(try reader.bytes(of: tensor)), Array(try initializer(inline, name).rawData), name)
            XCTAssertEqual(try TensorData.floats(of: tensor, external: reader).count, tensor.dims.reduce(1, *).asInt)
        }
        XCTAssertEqual(try initializer(model, "B").dataLocation, .default)
    }

    func testExternalToInlineEqualsPythonsInlineFile() throws {
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        try model.save(to: "\(folder)/out.onnx", externalData: .inline)
        XCTAssertEqual(try readBytes("\(folder)/out.onnx"), try readBytes("\(external)/inline.onnx"))
        XCTAssertEqual(listing(folder), ["out.onnx"])
        XCTAssertEqual(try model.serializedBytes(), try readBytes("\(external)/inline.onnx"))
    }

    func testInlineToExternalEqualsPythonsExternalFiles() throws {
        // Mapped at load (threshold 1) or parsed normally: both write what onnx.save writes.
        for minimum in [1, Int.max] {
            let out = "\(folder)/\(minimum)"
            XCTAssertEqual(mkdir(out, 0o755), 0)
            let model = try ONNXModel.load(path: "\(external)/inline.onnx", mappingTensorsFrom: minimum)
            try model.save(to: "\(out)/model.onnx", externalData: .external())
            XCTAssertEqual(try readBytes("\(out)/model.onnx"), try readBytes("\(external)/model.onnx"), "minimum \(minimum)")
            XCTAssertEqual(try readBytes("\(out)/model.onnx.data"), try readBytes("\(external)/model.onnx.data"), "minimum \(minimum)")
            XCTAssertEqual(listing(out), ["model.onnx", "model.onnx.data"])
        }
    }

    func testExternalToExternalCopiesIntoANewSideFile() throws {
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        try model.save(to: "\(folder)/copy.onnx")  // .automatic: the input used external data
        XCTAssertEqual(listing(folder), ["copy.onnx", "copy.onnx.data"])
        XCTAssertEqual(try readBytes("\(folder)/copy.onnx.data"), try readBytes("\(external)/model.onnx.data"))
        let again = try ONNXModel.load(path: "\(folder)/copy.onnx")
        XCTAssertEqual(try initializer(again, "W").externalData.map(\.value), ["copy.onnx.data", "0", "4096"])
        try again.save(to: "\(folder)/back.onnx", externalData: .inline)
        XCTAssertEqual(try readBytes("\(folder)/back.onnx"), try readBytes("\(external)/inline.onnx"))
    }

    func testThresholdAndCustomLocation() throws {
        let model = try ONNXModel.load(path: "\(external)/inline.onnx")
        try model.save(to: "\(folder)/m.onnx", externalData: .external(location: "weights.bin", sizeThreshold: 3000))
        let again = try ONNXModel.load(path: "\(folder)/m.onnx")
        XCTAssertEqual(try initializer(again, "W").externalData.map(\.value), ["weights.bin", "0", "4096"])
        XCTAssertEqual(try initializer(again, "W2").dataLocation, .default, "2048 bytes is under the threshold")
        XCTAssertEqual(listing(folder), ["m.onnx", "weights.bin"])
    }

    func testLargeTensorsAreAlignedInTheSideFile() throws {
        var proto = try ONNXModel.load(path: "\(external)/inline.onnx").proto
        proto.graph.initializer.append(TensorData.make(name: "big", type: .uint8, dims: [1 << 20], raw: [UInt8](repeating: 7, count: 1 << 20)))
        try ONNXModel(proto).save(to: "\(folder)/big.onnx", externalData: .external())
        let again = try ONNXModel.load(path: "\(folder)/big.onnx")
        let big = try initializer(again, "big")
        let offset = try XCTUnwrap(Int(big.externalData[1].value))
        XCTAssertEqual(offset % (64 << 10), 0)
        XCTAssertEqual(try again.dataReader!.bytes(of: big).allSatisfy { $0 == 7 }, true)
    }

    /// Large raw data left in the mapped model file is written back where the parser found it.
    func testMappedTensorsRoundTripByteExact() throws {
        for path in ["\(fixtures)/tiny.onnx", "\(fixtures)/unknown_fields.onnx", "\(external)/inline.onnx"] {
            let original = try readBytes(path)
            let model = try ONNXModel.load(path: path, mappingTensorsFrom: 1)
            XCTAssertTrue(model.proto.graph.initializer.contains { $0.dataLocation == .external }, path)
            XCTAssertEqual(try model.serializedBytes(), original, path)
            let out = "\(folder)/\(FileIO.split(path).name)"
            try model.save(to: out)
            XCTAssertEqual(try readBytes(out), original, path)
        }
    }

    /// The onnx package's test models (QUANTKIT_ONNX_ROUNDTRIP), every raw_data mapped.
    func testMappedRoundTripOfModelsNamedInEnvironment() throws {
        guard let list = getenv("QUANTKIT_ONNX_ROUNDTRIP").map({ String(cString: $0) }), !list.isEmpty else {
            throw XCTSkip("set QUANTKIT_ONNX_ROUNDTRIP to round-trip more models")
        }
        var paths: [String] = []
        func collect(_ path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return }
            if st.st_mode & S_IFMT == S_IFDIR {
                for name in listing(path) { collect("\(path)/\(name)") }
            } else if path.hasSuffix(".onnx") {
                paths.append(path)
            }
        }
        for item in list.split(separator: ":") { collect(String(item)) }
        var mapped = 0
        for path in paths {
            let original = try readBytes(path)
            guard let model = try? ONNXModel.load(path: path, mappingTensorsFrom: 1) else { continue }
            mapped += model.proto.graph.initializer.filter { $0.dataLocation == .external }.count
            XCTAssertEqual(try model.serializedBytes(), original, path)
        }
        print("mapped round trip: \(paths.count) models, \(mapped) mapped tensors")
    }

    // MARK: Bad external data

    /// model.onnx in `folder` with W's external-data entries replaced.
    func modelWithReference(_ entries: [(String, String)]) throws -> ONNXModel {
        try copy("\(external)/model.onnx.data", "\(folder)/model.onnx.data")
        var proto = try ONNXModel.load(path: "\(external)/model.onnx").proto
        proto.graph.initializer[0].externalData = entries.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        let path = "\(folder)/model.onnx"
        writeBytes(try proto.serializedBytes(), path)
        return try ONNXModel.load(path: path)
    }

    func readW(_ model: ONNXModel) throws {
        _ = try model.dataReader!.bytes(of: model.proto.graph.initializer[0])
    }

    func testMissingSideFile() throws {
        let model = try modelWithReference([("location", "gone.data"), ("offset", "0"), ("length", "4096")])
        assertFails(.externalDataMissing, mentioning: "gone.data") { try readW(model) }
    }

    func testOffsetOrLengthPastTheEnd() throws {
        for entries in [[("location", "model.onnx.data"), ("offset", "6000"), ("length", "4096")],
                        [("location", "model.onnx.data"), ("offset", "7000")],
                        [("location", "model.onnx.data"), ("offset", "9223372036854775807"), ("length", "10")]] {
            let model = try modelWithReference(entries)
            assertFails(.invalidModel, mentioning: "past the end") { try readW(model) }
        }
    }

    func testBadOffsetsAndLengths() throws {
        for (key, value) in [("offset", "-4"), ("offset", "four"), ("offset", ""), ("length", "-1"), ("length", "1e3")] {
            let model = try modelWithReference([("location", "model.onnx.data"), (key, value)])
            assertFails(.invalidModel, mentioning: "not a non-negative integer") { try readW(model) }
        }
        let model = try modelWithReference([("offset", "0")])
        assertFails(.invalidModel, mentioning: "names no location") { try readW(model) }
    }

    func testLocationsOutsideTheFolderAreRejected() throws {
        for location in ["../../etc/passwd", "../model.onnx.data", "sub/../../x", "/etc/passwd", "..", "a\\b"] {
            let model = try modelWithReference([("location", location)])
            assertFails(.externalDataOutsideFolder, mentioning: location) { try readW(model) }
        }
    }

    func testSymlinkOutOfTheFolderIsRejected() throws {
        let outside = "\(folder)-outside.data"
        try copy("\(external)/model.onnx.data", outside)
        defer { unlink(outside) }
        XCTAssertEqual(symlink(outside, "\(folder)/link.data"), 0)
        let model = try modelWithReference([("location", "link.data")])
        assertFails(.externalDataOutsideFolder, mentioning: "link.data") { try readW(model) }
        // A link that stays inside the folder is fine.
        XCTAssertEqual(symlink("model.onnx.data", "\(folder)/inside.data"), 0)
        let fine = try modelWithReference([("location", "inside.data"), ("length", "4096")])
        XCTAssertEqual(try fine.dataReader!.bytes(of: fine.proto.graph.initializer[0]).count, 4096)
    }

    func testLocationNamingADirectory() throws {
        XCTAssertEqual(mkdir("\(folder)/sub", 0o755), 0)
        let model = try modelWithReference([("location", "sub")])
        assertFails(.invalidModel, mentioning: "not a regular file") { try readW(model) }
    }

    func testBadReferenceStopsSavingAndWritesNothing() throws {
        let model = try modelWithReference([("location", "../../etc/passwd"), ("offset", "0"), ("length", "4096")])
        let out = "\(folder)/out"
        XCTAssertEqual(mkdir(out, 0o755), 0)
        for policy in [ExternalDataPolicy.inline, .external(), .automatic] {
            assertFails(.externalDataOutsideFolder, mentioning: "../../etc/passwd") {
                try model.save(to: "\(out)/m.onnx", externalData: policy)
            }
            XCTAssertEqual(listing(out), [], "\(policy)")
        }
    }

    // MARK: Saving errors

    func testExistingOutputsAreNotReplaced() throws {
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        let old = Array("old".utf8)
        writeBytes(old, "\(folder)/m.onnx.data")
        assertFails(.outputExists, mentioning: "m.onnx.data") { try model.save(to: "\(folder)/m.onnx", externalData: .external()) }
        XCTAssertEqual(listing(folder), ["m.onnx.data"])
        XCTAssertEqual(try readBytes("\(folder)/m.onnx.data"), old)

        unlink("\(folder)/m.onnx.data")
        writeBytes(old, "\(folder)/m.onnx")
        assertFails(.outputExists, mentioning: "m.onnx") { try model.save(to: "\(folder)/m.onnx", externalData: .external()) }
        XCTAssertEqual(listing(folder), ["m.onnx"])

        try model.save(to: "\(folder)/m.onnx", overwrite: true, externalData: .external())
        XCTAssertEqual(listing(folder), ["m.onnx", "m.onnx.data"])
        try model.save(to: "\(folder)/m.onnx", overwrite: true, externalData: .external())
        XCTAssertEqual(try readBytes("\(folder)/m.onnx.data"), try readBytes("\(external)/model.onnx.data"))
    }

    func testOutputsAreSyncedWhenTheyReplaceAFileOrWhenAsked() throws {
        let path = "\(folder)/out.onnx"
        XCTAssertFalse(try AtomicOutput(path: path, overwrite: false, sync: .whenReplacing).durable)
        XCTAssertFalse(try AtomicOutput(path: path, overwrite: true, sync: .whenReplacing).durable)
        XCTAssertTrue(try AtomicOutput(path: path, overwrite: false, sync: .always).durable)
        writeBytes(Array("old".utf8), path)
        XCTAssertTrue(try AtomicOutput(path: path, overwrite: true, sync: .whenReplacing).durable)
        XCTAssertEqual(listing(folder), ["out.onnx"])  // unfinished outputs left no temporary file

        XCTAssertEqual(ONNXModel.pairSync(.whenReplacing, replacingModel: false, replacingSide: false), .whenReplacing)
        XCTAssertEqual(ONNXModel.pairSync(.whenReplacing, replacingModel: true, replacingSide: false), .always)
        XCTAssertEqual(ONNXModel.pairSync(.whenReplacing, replacingModel: false, replacingSide: true), .always)
        XCTAssertEqual(ONNXModel.pairSync(.always, replacingModel: false, replacingSide: false), .always)

        // The bytes do not depend on it.
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        try model.save(to: "\(folder)/m.onnx", externalData: .external(), sync: .whenReplacing)
        XCTAssertEqual(try readBytes("\(folder)/m.onnx.data"), try readBytes("\(external)/model.onnx.data"))
        try model.save(to: "\(folder)/a.onnx", externalData: .inline, sync: .whenReplacing)
        try model.save(to: "\(folder)/b.onnx", externalData: .inline, sync: .always)
        XCTAssertEqual(try readBytes("\(folder)/a.onnx"), try readBytes("\(folder)/b.onnx"))
        try model.save(to: "\(folder)/a.onnx", overwrite: true, externalData: .inline, sync: .whenReplacing)
        XCTAssertEqual(try readBytes("\(folder)/a.onnx"), try readBytes("\(folder)/b.onnx"))
    }

    /// The bytes of a tensor wherever they are stored.
    func storedBytes(_ model: ONNXModel, _ tensor: Onnx_TensorProto) throws -> [UInt8] {
        tensor.dataLocation == .external ? Array(try XCTUnwrap(model.dataReader).bytes(of: tensor)) : Array(tensor.rawData)
    }

    /// A conversion that writes each new weight into the spool as it goes saves the tensors that
    /// converting first and saving at the end saves.
    func testConvertingIntoASpoolEqualsSavingAtTheEnd() throws {
        let model = try ONNXModel.load(path: "\(external)/model.onnx")
        var atEnd = model
        _ = try Converter(options: ConversionOptions()).convert(&atEnd.proto, external: model.dataReader)
        try atEnd.save(to: "\(folder)/end.onnx", externalData: .external())

        var spooled = model
        let spool = try ExternalDataSpool(modelPath: "\(folder)/spooled.onnx", overwrite: false)
        _ = try Converter(options: ConversionOptions()).convert(&spooled.proto, external: model.dataReader, spool: spool)
        let packed = try initializer(spooled, "W_Q4")  // 64 × 1 × 16 bytes: at the 1 KiB threshold
        XCTAssertEqual(packed.externalData.map(\.value), ["spooled.onnx.data", "0", "1024"], "written during the conversion")
        XCTAssertFalse(packed.hasRawData)
        XCTAssertEqual(try initializer(spooled, "W2_Q4").dataLocation, .default, "256 bytes: under the threshold")
        let pending = listing(folder).filter { $0.hasPrefix(".spooled.onnx.data.tmp-") }
        XCTAssertEqual(listing(folder), (["end.onnx", "end.onnx.data"] + pending).sorted())
        XCTAssertEqual(pending.count, 1, "nothing under a final name before the commit")

        XCTAssertEqual(try spooled.save(spool: spool, reader: model.dataReader), ["\(folder)/spooled.onnx", "\(folder)/spooled.onnx.data"])
        XCTAssertEqual(listing(folder), ["end.onnx", "end.onnx.data", "spooled.onnx", "spooled.onnx.data"])
        let (a, b) = (try ONNXModel.load(path: "\(folder)/end.onnx"), try ONNXModel.load(path: "\(folder)/spooled.onnx"))
        XCTAssertEqual(a.proto.graph.initializer.map(\.name), b.proto.graph.initializer.map(\.name))
        XCTAssertEqual(a.proto.graph.node, b.proto.graph.node)
        for (x, y) in zip(a.proto.graph.initializer, b.proto.graph.initializer) {
            XCTAssertEqual(try storedBytes(a, x), try storedBytes(b, y), x.name)
            XCTAssertEqual(x.dataLocation, y.dataLocation, x.name)
        }
    }

    /// A spool dropped before its commit (a failed conversion) leaves nothing; one that would
    /// replace a file without permission fails before writing anything.
    func testUncommittedSpoolLeavesNothing() throws {
        do {
            let spool = try ExternalDataSpool(modelPath: "\(folder)/m.onnx", overwrite: false)
            var tensor = TensorData.make(name: "t", type: .uint8, dims: [4096], raw: [UInt8](repeating: 3, count: 4096))
            try spool.take(&tensor)
            XCTAssertEqual(tensor.dataLocation, .external)
            XCTAssertEqual(listing(folder).count, 1)
        }
        XCTAssertEqual(listing(folder), [])
        writeBytes(Array("old".utf8), "\(folder)/m.onnx.data")
        assertFails(.outputExists, mentioning: "m.onnx.data") { _ = try ExternalDataSpool(modelPath: "\(folder)/m.onnx", overwrite: false) }
        XCTAssertEqual(listing(folder), ["m.onnx.data"])
    }

    /// A write that fails on the spool's writer thread (here: over a file size limit) is thrown
    /// by a later `take` or by `finishWrites`, and the spool still leaves nothing behind.
    func testFailedBackgroundWriteIsReportedAndLeavesNothing() throws {
        var saved = rlimit()
        XCTAssertEqual(getrlimit(RLIMIT_FSIZE_ID, &saved), 0)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)  // the write then fails with EFBIG instead of killing the process
        defer {
            var restore = saved
            _ = setrlimit(RLIMIT_FSIZE_ID, &restore)
            signal(SIGXFSZ, oldHandler)
        }
        var limit = saved
        limit.rlim_cur = 2 << 20
        XCTAssertEqual(setrlimit(RLIMIT_FSIZE_ID, &limit), 0)
        do {
            let spool = try ExternalDataSpool(modelPath: "\(folder)/m.onnx", overwrite: false)
            var thrown: (any Error)?
            for i in 0..<8 where thrown == nil {
                // 1.5 MB: over AtomicOutput's buffer, so each is written when its job runs.
                var tensor = TensorData.make(name: "t\(i)", type: .uint8, dims: [3 << 19], raw: [UInt8](repeating: 1, count: 3 << 19))
                do { try spool.take(&tensor) } catch { thrown = error }
            }
            if thrown == nil { XCTAssertThrowsError(try spool.finishWrites()) { thrown = $0 } }
            XCTAssertEqual((thrown as? QuantError)?.status, .io, "\(String(describing: thrown))")
            XCTAssertTrue(spool.writeFailed)
            XCTAssertEqual(listing(folder).count, 1)
        }
        XCTAssertEqual(listing(folder), [])
    }

    func testSideFileMustBeAPlainName() throws {
        let model = try ONNXModel.load(path: "\(external)/inline.onnx")
        for location in ["../x.data", "sub/x.data", "/tmp/x.data", "", "m.onnx"] {
            assertFails(.invalidArgument, mentioning: "external data") {
                try model.save(to: "\(folder)/m.onnx", externalData: .external(location: location))
            }
        }
        XCTAssertEqual(listing(folder), [])
    }

    /// A full disk (a 1 MiB tmpfs, where this runs as root) is `.diskFull`, with nothing left behind.
    func testDiskFullLeavesNothing() throws {
        let small = "\(folder)/small"
        XCTAssertEqual(mkdir(small, 0o755), 0)
        guard getuid() == 0, mount("tmpfs", small, "tmpfs", 0, "size=1m") == 0 else {
            throw XCTSkip("needs root and permission to mount a tmpfs")
        }
        defer { umount(small) }
        var proto = try ONNXModel.load(path: "\(external)/inline.onnx").proto
        proto.graph.initializer.append(TensorData.make(name: "big", type: .uint8, dims: [2 << 20], raw: [UInt8](repeating: 1, count: 2 << 20)))
        for policy in [ExternalDataPolicy.inline, .external()] {
            assertFails(.diskFull, mentioning: "disk is full") { try ONNXModel(proto).save(to: "\(small)/m.onnx", externalData: policy) }
            XCTAssertEqual(listing(small), [], "\(policy)")
        }
    }

    /// A side file of 2 GiB (sparse: no disk used) cannot go inline.
    func testInlineOverTheProtobufLimitSuggestsExternalData() throws {
        let size = Int(Int32.max) + 4096
        let fd = open("\(folder)/huge.data", O_WRONLY | O_CREAT, 0o644)
        XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
        close(fd)
        var proto = try ONNXModel.load(path: "\(external)/model.onnx").proto
        proto.graph.initializer[0].dims = [Int64(size / 4)]
        proto.graph.initializer[0].externalData[0].value = "huge.data"
        proto.graph.initializer[0].externalData[2].value = String(size)
        writeBytes(try proto.serializedBytes(), "\(folder)/huge.onnx")
        try copy("\(external)/model.onnx.data", "\(folder)/model.onnx.data")
        let model = try ONNXModel.load(path: "\(folder)/huge.onnx")
        assertFails(.invalidModel, mentioning: "external data") { try model.save(to: "\(folder)/out.onnx", externalData: .inline) }
        XCTAssertFalse(listing(folder).contains { $0.contains("out.onnx") })
    }
}

private extension Int64 {
    var asInt: Int { Int(self) }
}
