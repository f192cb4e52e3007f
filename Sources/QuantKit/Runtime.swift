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
