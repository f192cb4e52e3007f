import CQuantKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Instruction-set variants of the fast kernels, lowest first.
public enum KernelVariant: Int, Comparable, Sendable {
    case scalar = 0, avx2, avx512

    public var name: String { ["scalar", "avx2", "avx512"][rawValue] }
    public static func < (a: KernelVariant, b: KernelVariant) -> Bool { a.rawValue < b.rawValue }
}

/// Variants of the matmul kernels, lowest first. AVX2 without VNNI uses maddubs/madd.
public enum MatmulVariant: Int, Comparable, Sendable, CaseIterable {
    case scalar = 0, avx2, avx2Vnni, avx512Vnni

    public var name: String { ["scalar", "avx2", "avx2-vnni", "avx512-vnni"][rawValue] }
    public static func < (a: MatmulVariant, b: MatmulVariant) -> Bool { a.rawValue < b.rawValue }
}

/// Process-wide settings: the kernel variant (chosen once) and the default thread count.
public enum Runtime {
    /// Best variant the CPU supports, lowered by QUANTKIT_KERNELS=scalar|avx2|avx512 if set.
    public static let kernelVariant: KernelVariant = {
        let features = qkint_cpu_features()
        var best = KernelVariant.scalar
        if features & UInt32(QKINT_CPU_AVX2) != 0 { best = .avx2 }
        if features & UInt32(QKINT_CPU_AVX512) != 0 { best = .avx512 }
        if let requested = getenv("QUANTKIT_KERNELS").map({ String(cString: $0).lowercased() }),
           let variant = [KernelVariant.scalar, .avx2, .avx512].first(where: { $0.name == requested }) {
            return min(best, variant)
        }
        return best
    }()

    /// Matmul kernels the CPU can run (the scalar reference always).
    public static let supportedMatmulVariants: [MatmulVariant] = {
        let features = qkint_cpu_features()
        var variants: [MatmulVariant] = [.scalar]
        if features & UInt32(QKINT_CPU_AVX2) != 0 { variants.append(.avx2) }
        if features & UInt32(QKINT_CPU_AVX2) != 0 && features & UInt32(QKINT_CPU_AVXVNNI) != 0 { variants.append(.avx2Vnni) }
        if features & UInt32(QKINT_CPU_AVX512) != 0 && features & UInt32(QKINT_CPU_AVX512VNNI) != 0 { variants.append(.avx512Vnni) }
        return variants
    }()

    /// Best supported matmul variant, at most the level QUANTKIT_KERNELS asks for
    /// (scalar, avx2, avx2-vnni, or avx512 for avx512-vnni).
    public static let matmulVariant: MatmulVariant = {
        var ceiling = MatmulVariant.avx512Vnni
        if let requested = getenv("QUANTKIT_KERNELS").map({ String(cString: $0).lowercased() }) {
            switch requested {
            case "scalar": ceiling = .scalar
            case "avx2": ceiling = .avx2
            case "avx2-vnni": ceiling = .avx2Vnni
            default: break
            }
        }
        return supportedMatmulVariants.last { $0 <= ceiling } ?? .scalar
    }()

    public static let cpuCount = Int(qkint_cpu_count())
    private static let requestedThreads = Atomic<Int>(0)

    /// Threads used when a call asks for 0 (the default): all cores unless set.
    public static var defaultThreadCount: Int {
        let n = requestedThreads.load(ordering: .relaxed)
        return n > 0 ? n : cpuCount
    }

    /// 0 restores "all cores".
    public static func setDefaultThreadCount(_ n: Int) {
        requestedThreads.store(max(0, n), ordering: .relaxed)
    }
}
