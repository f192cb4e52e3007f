import QuantKit

#if canImport(Glibc)
import Glibc
#endif

/// C strings that live as long as the process (names in tables, status names, versions).
enum StaticStrings {
    static func make(_ s: String) -> UnsafePointer<CChar> {
        // Out of memory at load time: an empty constant from the binary rather than a trap.
        UnsafePointer(strdup(s)) ?? UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
    }

    static let empty = make("")
    static let version = make(QuantKitInfo.version)
    static let formatNames: [UnsafePointer<CChar>] = FormatTable.all.map { make($0.name) }
    static let formatDescriptions: [UnsafePointer<CChar>] = FormatTable.all.map { make($0.description) }
    static let variantNames: [UnsafePointer<CChar>] = ["scalar", "avx2", "avx512"].map(make)
    static let matmulVariantNames: [UnsafePointer<CChar>] = MatmulVariant.allCases.map { make($0.name) }

    static let statusNames: [UnsafePointer<CChar>] = [
        "QK_OK", "QK_ERROR_INVALID_ARGUMENT", "QK_ERROR_NULL_POINTER", "QK_ERROR_UNSUPPORTED",
        "QK_ERROR_BUFFER_TOO_SMALL", "QK_ERROR_SHAPE_MISMATCH", "QK_ERROR_NON_FINITE",
        "QK_ERROR_OUT_OF_MEMORY", "QK_ERROR_OVERFLOW", "QK_ERROR_IO", "QK_ERROR_INVALID_MODEL",
        "QK_ERROR_INTERNAL", "QK_ERROR_VERSION",
    ].map(make)
    static let unknownStatus = make("unknown status")
}
