#if canImport(Glibc)
import Glibc
let stderrStream = Glibc.stderr
#elseif canImport(Musl)
import Musl
let stderrStream = Musl.stderr!
#elseif canImport(Darwin)
import Darwin
let stderrStream = Darwin.stderr
#endif

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct ProgressBar {
    let enabled: Bool
    private var lastDrawn = -1

    init(enabled: Bool) {
        self.enabled = enabled && isatty(2) == 1
    }

    mutating func update(done: Int, total: Int, label: String) {
        guard enabled, total > 0 else { return }
        let width = 30
        let filled = done * width / total
        guard filled != lastDrawn || done == total else { return }
        lastDrawn = filled
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        let name = label.count > 40 ? "…" + label.suffix(39) : label
        fputs("\r\u{1B}[2K[\(bar)] \(done)/\(total) \(name)", stderrStream)
        if done == total { fputs("\r\u{1B}[2K", stderrStream) }
        fflush(stderrStream)
    }
}

/// Monotonic seconds, for the summary's timing.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Size of a file in bytes (0 when it does not exist).
func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// The canonical path of an existing file, or nil.
func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
