/// The library version (matches QK_VERSION_* in Include/quantkit.h; a test checks they agree).
public enum QuantKitInfo {
    public static let version = "0.2.0"
    public static let versionNumber = 200
}
