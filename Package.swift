// swift-tools-version: 6.1
// QuantKit: low-bit quantization kernels and ONNX conversion, exported through Include/quantkit.h.
import PackageDescription

let root = Context.packageDirectory

/// ISA modules are compiled for their instruction set only; the loader picks one at run time.
func isaFlags(_ flags: [String]) -> [SwiftSetting] {
    [.unsafeFlags(flags.flatMap { ["-Xcc", $0] })]
}

let package = Package(
    name: "QuantKit",
    products: [
        // libquantkit.so: the C ABI. Swift stdlib linked statically; only qk_* exported.
        .library(name: "quantkit", type: .dynamic, targets: ["QuantKitCAPI"]),
        // The CLI; scripts/build.sh installs it as dist/bin/quantkit (a product may not share
        // the library's name).
        .executable(name: "quantkit-cli", targets: ["quantkit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CQuantKit"),
        .target(name: "QuantKitAVX2", swiftSettings: isaFlags(["-mavx2", "-mfma", "-mf16c", "-mbmi2"])),
        .target(
            name: "QuantKitAVX512",
            swiftSettings: isaFlags(["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c", "-mbmi2"])),
        .target(name: "QuantKit", dependencies: ["CQuantKit", "QuantKitAVX2", "QuantKitAVX512"]),
        .target(
            name: "QuantKitCAPI",
            dependencies: ["CQuantKit", "QuantKit"],
            exclude: ["exports.map"],
            swiftSettings: [.enableExperimentalFeature("CImplementation")],
            linkerSettings: [
                .unsafeFlags([
                    "-static-stdlib",
                    "-Xlinker", "--version-script=\(root)/Sources/QuantKitCAPI/exports.map",
                ]),
            ]),
        .executableTarget(
            name: "quantkit",
            dependencies: ["QuantKit", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "QuantKitTests", dependencies: ["QuantKit"]),
    ],
    swiftLanguageModes: [.v5]
)
