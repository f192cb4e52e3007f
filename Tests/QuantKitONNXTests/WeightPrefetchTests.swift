import QuantKit
@testable import QuantKitONNX
import Foundation
import XCTest

/// Layers quantized side by side (`WeightPrefetcher`) give the model, report and errors of layers
/// quantized one at a time.
final class WeightPrefetchTests: XCTestCase {
    /// X → MatMul(W0) → MatMul(W1) → ... with the given [K, N] weights, a Gemm with a bias after
    /// them, and an embedding Gather. `nanIn`: layers whose weight holds a NaN.
    func chain(_ shapes: [(k: Int, n: Int)], nanIn: Set<Int> = [], type: ONNXType = .float) -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = "chain"
        var input = "X"
        for (i, shape) in shapes.enumerated() {
            var w = (0..<(shape.k * shape.n)).map { Float((($0 + i * 31) * 7919) % 211) / 100 - 1 }
            if nanIn.contains(i) { w[w.count / 2] = .nan }
            g.initializer.append(TensorData.make(name: "W\(i)", floats: w, dims: [shape.k, shape.n], type: type))
            g.node.append(Onnx_NodeProto("MatMul", name: "mm\(i)", inputs: [input, "W\(i)"], outputs: ["Y\(i)"]))
            input = "Y\(i)"
        }
        let n = shapes.last!.n
        g.initializer.append(TensorData.make(name: "G", floats: (0..<(n * 48)).map { Float($0 % 13) / 6 - 1 }, dims: [48, n], type: type))
        g.initializer.append(TensorData.make(name: "C", floats: (0..<48).map { Float($0) / 10 }, dims: [48], type: type))
        g.node.append(Onnx_NodeProto("Gemm", name: "gemm", inputs: [input, "G", "C"], outputs: ["Z"], attributes: [.int("transB", 1)]))
        g.initializer.append(TensorData.make(name: "T", floats: (0..<(300 * 64)).map { Float($0 % 29) / 14 - 1 }, dims: [300, 64], type: type))
        g.node.append(Onnx_NodeProto("Gather", name: "emb", inputs: ["T", "ids"], outputs: ["E"]))
        return ModelFixture.model(g)
    }

    /// Small layers of uneven sizes, and one with `splitElements` weights (split over threads).
    let shapes: [(k: Int, n: Int)] = [(64, 96), (96, 33), (33, 200), (200, 64), (64, 64), (64, 1024),
                                      (1024, WeightPrefetcher.splitElements / 1024), (WeightPrefetcher.splitElements / 1024, 40), (40, 72)]

    func convert(_ model: Onnx_ModelProto, _ settings: LayerSettings, threads: Int) throws -> (model: Onnx_ModelProto, report: ConversionReport) {
        var options = ConversionOptions()
        options.defaults = settings
        options.threads = threads
        var m = model
        let report = try Converter(options: options).convert(&m, external: nil)
        return (m, report)
    }

    func testLayersSideBySideGiveTheModelAndReportOfOneAtATime() throws {
        let model = chain(shapes)
        for settings in [LayerSettings(), LayerSettings(format: .uint4, blockSize: 64, scheme: .asymmetric),
                         LayerSettings(format: .int8, blockSize: 128), LayerSettings(format: .nf4, blockSize: 64)] {
            let one = try convert(model, settings, threads: 1)
            for threads in [2, 3, 8] {
                let many = try convert(model, settings, threads: threads)
                XCTAssertEqual(try many.model.serializedBytes() as [UInt8], try one.model.serializedBytes() as [UInt8],
                               "\(settings.summary), \(threads) threads")
                XCTAssertEqual(many.report.layers.map(\.sqnrDB), one.report.layers.map(\.sqnrDB))
                XCTAssertEqual(many.report.layers.map(\.node), one.report.layers.map(\.node))
            }
            // Every MatMul, the Gemm and the Gather were rewritten (the test covers the prefetched path).
            XCTAssertEqual(one.report.layers.filter { $0.skipped == nil }.count, shapes.count + 2, settings.summary)
        }
    }

    func testSideBySideFromMappedExternalDataEqualsOneAtATime() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("qk-prefetch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try ONNXModel(chain(shapes)).save(to: "\(folder)/in.onnx", externalData: .external())
        var outputs: [[UInt8]] = []
        for threads in [1, 4] {
            let model = try ONNXModel.load(path: "\(folder)/in.onnx")
            var converted = model
            var options = ConversionOptions()
            options.threads = threads
            let spool = try ExternalDataSpool(modelPath: "\(folder)/out\(threads).onnx", overwrite: false)
            _ = try Converter(options: options).convert(&converted.proto, external: model.dataReader, spool: spool)
            _ = try converted.save(spool: spool, reader: model.dataReader)
            outputs.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(folder)/out\(threads).onnx.data"))))
        }
        XCTAssertGreaterThan(outputs[0].count, 1 << 20)
        XCTAssertEqual(outputs[1], outputs[0], "side files of 1 and 4 threads")
    }

    func testTheFirstFailingLayerInModelOrderIsTheError() throws {
        // Layer 6 is large and slow; layer 7 fails early in time, layer 6 fails too.
        let model = chain(shapes, nanIn: [6, 7])
        var messages: [String] = []
        for threads in [1, 2, 8] {
            XCTAssertThrowsError(try convert(model, LayerSettings(), threads: threads)) { error in
                messages.append(String(describing: error))
            }
        }
        XCTAssertEqual(messages.count, 3)
        XCTAssertTrue(messages[0].contains("node 'mm6'"), messages[0])
        XCTAssertEqual(Set(messages).count, 1, "the same error whatever the thread count: \(messages)")
    }

    func prefetcher(_ layers: [LinearLayer], request: WeightRequest, workers: Int) -> WeightPrefetcher {
        WeightPrefetcher(jobs: layers.map { WeightPrefetcher.Job(layer: $0, request: request) }, workers: workers, threads: workers,
                         external: nil, measureError: true, workspace: BandWorkspace(), pool: TensorBufferPool())
    }

    func request(k: Int, n: Int, block: Int) -> WeightRequest {
        var params = QuantParams(format: .int4)
        params.blockSize = block
        params.axis = 1
        return WeightRequest(params: params, shape: [n, k], transposed: true)
    }

    func testResultsComeInOrderAndStoppingEarlyReturns() throws {
        let layers = (0..<12).map { _ in LinearLayerFixture.matMul(k: 64, n: 48) }
        let asked = request(k: 64, n: 48, block: 32)
        let expected = try layers[0].quantizeWeight(asked.params, shape: asked.shape, transposed: true, external: nil, measureError: true)
        let all = prefetcher(layers, request: asked, workers: 3)
        for i in layers.indices {
            let result = try all.take(i).get()
            XCTAssertEqual(result.data, expected.data)
            XCTAssertEqual(result.scales, expected.scales)
            XCTAssertEqual(result.error, expected.error)
        }
        all.stop()
        // Stopped after one result of 12, with the other workers' jobs running or waiting for a slot.
        let early = prefetcher(layers, request: asked, workers: 4)
        XCTAssertNoThrow(try early.take(0).get())
        early.stop()
    }

    func testAPrefetchedResultAnswersOnlyItsOwnRequest() throws {
        let layer = LinearLayerFixture.matMul(k: 64, n: 48)
        var context = RewriteContext(names: ModelNames(Onnx_ModelProto()), external: nil, opset: 17, measureError: false, threads: 1, spool: nil)
        let asked = request(k: 64, n: 48, block: 32)
        let planted = Result<QuantizedWeight, any Error>.failure(QuantError(.internalError, "the planted result"))

        context.prefetched = (layer.weight.name, request(k: 64, n: 48, block: 16), planted)
        XCTAssertEqual(try context.quantizedWeight(layer, asked).plan.params.blockSize, 32, "another block size: quantized now")
        context.prefetched = ("other weight", asked, planted)
        XCTAssertNoThrow(try context.quantizedWeight(layer, asked), "another weight: quantized now")

        var threadsDiffer = asked
        threadsDiffer.params.threads = 7
        context.prefetched = (layer.weight.name, threadsDiffer, planted)
        XCTAssertThrowsError(try context.quantizedWeight(layer, asked), "the same request whatever its thread count") { error in
            XCTAssertTrue(String(describing: error).contains("the planted result"))
        }
        XCTAssertNil(context.prefetched, "used once")
    }
}
