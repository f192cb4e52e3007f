import CQuantKit
import QuantKit

#if canImport(Glibc)
import Glibc
#endif

/// Thread-local "last error" message (qk_last_error), kept as a malloc'd C string per thread.
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()

    static func set(_ message: String) {
        let copy = strdup(message)
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, copy)
        free(previous)
    }

    static var current: UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return StaticStrings.empty
    }
}

/// Runs an export's body: a thrown QuantError becomes its status code and the thread's message.
/// Nothing traps past this point: every argument was validated before use.
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws -> Void) -> qk_status {
    do {
        try body()
        return qk_status(QK_OK)
    } catch let error as QuantError {
        LastError.set("\(function): \(error.message)")
        return error.status.rawValue
    } catch {
        LastError.set("\(function): \(error)")
        return qk_status(QK_ERROR_INTERNAL)
    }
}

func nullArgument(_ name: String) -> QuantError { QuantError(.nullPointer, "\(name) is NULL") }
