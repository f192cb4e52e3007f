import FoundationEssentials
import QuantKit

/// A recipe file: default settings, which nodes to consider, and per-pattern overrides. JSON:
///
///     {
///       "format": "int4", "block_size": 32, "scheme": "symmetric", "target": "matmulnbits",
///       "accuracy_level": 4, "method": "minmax", "reduce_range": false,
///       "lm_head_bits": 8, "embedding_bits": "float",
///       "op_types": ["MatMul", "Gemm"], "include": ["*"], "exclude": ["*attn*"],
///       "rules": [
///         {"pattern": "*/mlp/down_proj/*", "format": "int8", "block_size": 0},
///         {"pattern": "*layers.0/*", "skip": true}
///       ]
///     }
///
/// Every key is optional. A rule's missing keys take the recipe's (and the command line's)
/// defaults. Patterns are shell globs matched against node names and weight names.
public struct Recipe: Sendable {
    public struct Settings: Decodable, Sendable {
        public var format: String?
        public var blockSize: Int?
        public var scheme: String?
        public var target: String?
        public var accuracyLevel: Int?
        public var method: String?
        public var reduceRange: Bool?

        public init() {}

        enum CodingKeys: String, CodingKey {
            case format, scheme, target, method
            case blockSize = "block_size"
            case accuracyLevel = "accuracy_level"
            case reduceRange = "reduce_range"
        }

        static let keys = ["format", "scheme", "target", "method", "block_size", "accuracy_level", "reduce_range"]
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// A misspelt key would otherwise be ignored silently.
    static func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = container.allKeys.map(\.stringValue).first(where: { !known.contains($0) }) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown key '\(unknown)' (known: \(known.joined(separator: ", ")))"))
        }
    }

    struct Rule: Decodable {
        var pattern: String
        var skip: Bool?
        var settings: Settings

        enum CodingKeys: String, CodingKey { case pattern, skip }

        init(from decoder: any Decoder) throws {
            try Recipe.rejectUnknownKeys(decoder, known: ["pattern", "skip"] + Settings.keys)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            pattern = try container.decode(String.self, forKey: .pattern)
            skip = try container.decodeIfPresent(Bool.self, forKey: .skip)
            settings = try Settings(from: decoder)
        }
    }

    /// "float" or a number of bits.
    enum Bits: Decodable {
        case float
        case bits(Int)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let n = try? container.decode(Int.self) {
                self = .bits(n)
            } else if try container.decode(String.self) == "float" {
                self = .float
            } else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a number of bits or \"float\"")
            }
        }
    }

    struct File: Decodable {
        var settings: Settings
        var lmHeadBits: Bits?
        var embeddingBits: Bits?
        var opTypes: [String]?
        var include: [String]?
        var exclude: [String]?
        var rules: [Rule]?

        enum CodingKeys: String, CodingKey {
            case include, exclude, rules
            case lmHeadBits = "lm_head_bits"
            case embeddingBits = "embedding_bits"
            case opTypes = "op_types"
        }

        init(from decoder: any Decoder) throws {
            try Recipe.rejectUnknownKeys(decoder, known: ["lm_head_bits", "embedding_bits", "op_types", "include", "exclude", "rules"] + Settings.keys)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            settings = try Settings(from: decoder)
            lmHeadBits = try container.decodeIfPresent(Bits.self, forKey: .lmHeadBits)
            embeddingBits = try container.decodeIfPresent(Bits.self, forKey: .embeddingBits)
            opTypes = try container.decodeIfPresent([String].self, forKey: .opTypes)
            include = try container.decodeIfPresent([String].self, forKey: .include)
            exclude = try container.decodeIfPresent([String].self, forKey: .exclude)
            rules = try container.decodeIfPresent([Rule].self, forKey: .rules)
        }
    }

    let file: File
    let source: String

    /// Parses a recipe; errors name the file and the key.
    public init(json: [UInt8], source: String) throws {
        self.source = source
        do {
            file = try JSONDecoder().decode(File.self, from: Data(json))
        } catch let error as DecodingError {
            throw QuantError(.invalidArgument, "recipe '\(source)': \(Self.explain(error))")
        } catch {
            throw QuantError(.invalidArgument, "recipe '\(source)' is not valid JSON: \(error)")
        }
    }

    public static func load(path: String) throws -> Recipe {
        try Recipe(json: FileIO.readAll(path: path, limit: 16 << 20), source: path)
    }

    /// The recipe's top-level settings over `options.defaults`.
    public func settingsOverride(_ base: LayerSettings) throws -> LayerSettings {
        try Self.apply(file.settings, to: base, context: "recipe '\(source)'")
    }

    /// Applies everything but the top-level settings (call after the defaults are final, so that
    /// rules inherit them).
    public func apply(to options: inout ConversionOptions) throws {
        if let bits = file.lmHeadBits { options.lmHeadBits = try Self.bits(bits, "lm_head_bits") }
        if let bits = file.embeddingBits { options.embeddingBits = try Self.bits(bits, "embedding_bits") }
        if let opTypes = file.opTypes {
            let unknown = Set(opTypes).subtracting(LinearLayer.opTypes)
            guard unknown.isEmpty else {
                throw QuantError(.invalidArgument, "recipe '\(source)': op_types \(unknown.sorted()) are not among \(LinearLayer.opTypes.sorted())")
            }
            options.opTypes = Set(opTypes)
        }
        options.include += file.include ?? []
        options.exclude += file.exclude ?? []
        for rule in file.rules ?? [] {
            let settings = rule.skip == true ? nil : try Self.apply(rule.settings, to: options.defaults, context: "recipe '\(source)', rule '\(rule.pattern)'")
            options.rules.append(LayerRule(pattern: rule.pattern, settings: settings))
        }
    }

    static func bits(_ value: Bits, _ key: String) throws -> Int? {
        switch value {
        case .float: return nil
        case .bits(let n):
            guard [2, 4, 8].contains(n) else { throw QuantError(.invalidArgument, "\(key) must be 2, 4, 8 or \"float\", not \(n)") }
            return n
        }
    }

    /// `settings` over `base`; a new format without a new target takes that format's default target.
    public static func apply(_ settings: Settings, to base: LayerSettings, context: String) throws -> LayerSettings {
        var result = base
        if let name = settings.format {
            guard let format = FormatTable.lookup(name) else {
                throw QuantError(.invalidArgument, "\(context): unknown format '\(name)' (see `quantkit formats`)")
            }
            result.format = format
            if settings.target == nil { result.target = ConversionTarget.defaultTarget(for: format) }
        }
        if let block = settings.blockSize {
            guard block >= 0 else { throw QuantError(.invalidArgument, "\(context): block_size \(block) is negative") }
            result.blockSize = block
        }
        if let scheme = settings.scheme {
            switch scheme {
            case "symmetric", "sym": result.scheme = .symmetric
            case "asymmetric", "asym": result.scheme = .asymmetric
            default: throw QuantError(.invalidArgument, "\(context): scheme '\(scheme)' is not symmetric or asymmetric")
            }
        }
        if let name = settings.target {
            guard let target = ConversionTarget(rawValue: name) else {
                throw QuantError(.invalidArgument, "\(context): target '\(name)' is not one of \(ConversionTarget.allCases.map(\.rawValue))")
            }
            result.target = target
        }
        if let level = settings.accuracyLevel {
            guard (0...4).contains(level) else { throw QuantError(.invalidArgument, "\(context): accuracy_level \(level) is outside 0...4") }
            result.accuracyLevel = level
        }
        if let method = settings.method {
            guard let m = ScaleMethod(name: method) else {
                throw QuantError(.invalidArgument, "\(context): method '\(method)' is not minmax, mse or percentile")
            }
            result.method = m
        }
        if let reduce = settings.reduceRange { result.reduceRange = reduce }
        return result
    }

    static func explain(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return keys.isEmpty ? "" : " at '\(keys)'"
        }
        switch error {
        case .typeMismatch(_, let c): return "wrong type\(path(c)): \(c.debugDescription)"
        case .valueNotFound(_, let c): return "missing value\(path(c))"
        case .keyNotFound(let key, let c): return "missing key '\(key.stringValue)'\(path(c))"
        case .dataCorrupted(let c): return "invalid\(path(c)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

extension ScaleMethod {
    public init?(name: String) {
        switch name.lowercased() {
        case "minmax", "min-max", "rtn": self = .minMax
        case "mse": self = .mse
        case "percentile": self = .percentile
        default: return nil
        }
    }
}
