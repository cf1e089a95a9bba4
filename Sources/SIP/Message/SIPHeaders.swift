/// The header fields of a message, in order.
///
/// All values live in one byte array: a parsed message keeps the bytes it was parsed from (one
/// copy, with line folding blanked in place) and each field is a name plus a range into them, so
/// parsing allocates no string per header. Values set later are appended to the same array.
public struct SIPHeaders: Sendable, Sequence {
    public struct Field: Sendable {
        public var name: SIPHeaderName
        @usableFromInline var range: Range<Int>
    }

    @usableFromInline var storage: [UInt8]
    @usableFromInline var fields: [Field]

    public init() {
        storage = []
        fields = []
    }

    init(storage: [UInt8], fields: [Field]) {
        self.storage = storage
        self.fields = fields
    }

    public var count: Int { fields.count }

    /// The value of field `index`, leading and trailing white space removed.
    public func value(at index: Int) -> String {
        String(decoding: storage[fields[index].range], as: UTF8.self)
    }

    public func name(at index: Int) -> SIPHeaderName { fields[index].name }

    /// The first value of `name`, or nil.
    public subscript(name: SIPHeaderName) -> String? {
        guard let index = fields.firstIndex(where: { $0.name == name }) else { return nil }
        return value(at: index)
    }

    /// All values of `name`, one per header field (a field may hold a comma-separated list).
    public func values(_ name: SIPHeaderName) -> [String] {
        fields.indices.filter { fields[$0].name == name }.map { value(at: $0) }
    }

    public func contains(_ name: SIPHeaderName) -> Bool {
        fields.contains { $0.name == name }
    }

    public func count(of name: SIPHeaderName) -> Int {
        fields.reduce(0) { $0 + ($1.name == name ? 1 : 0) }
    }

    /// A scanner over field `index`'s value, sharing the storage (no copy).
    public func scanner(at index: Int) -> SIPScanner {
        SIPScanner(storage, range: fields[index].range)
    }

    /// Indices of the fields named `name`.
    public func indices(of name: SIPHeaderName) -> [Int] {
        fields.indices.filter { fields[$0].name == name }
    }

    /// Appends a field at the end.
    public mutating func add(_ name: SIPHeaderName, _ value: String) {
        fields.append(Field(name: name, range: store(value)))
    }

    /// Inserts a field before all others of any name (for a new top Via or Route).
    public mutating func prepend(_ name: SIPHeaderName, _ value: String) {
        fields.insert(Field(name: name, range: store(value)), at: 0)
    }

    /// Inserts a field before the first field named `name`, or appends it.
    public mutating func insertFirst(_ name: SIPHeaderName, _ value: String) {
        let field = Field(name: name, range: store(value))
        if let index = fields.firstIndex(where: { $0.name == name }) {
            fields.insert(field, at: index)
        } else {
            fields.append(field)
        }
    }

    /// Replaces every field named `name` with one field holding `value` (where the first was).
    public mutating func set(_ name: SIPHeaderName, _ value: String) {
        let range = store(value)
        if let first = fields.firstIndex(where: { $0.name == name }) {
            fields[first].range = range
            var index = fields.count - 1
            while index > first {
                if fields[index].name == name { fields.remove(at: index) }
                index -= 1
            }
        } else {
            fields.append(Field(name: name, range: range))
        }
    }

    /// Replaces the value of field `index`.
    public mutating func replaceValue(at index: Int, with value: String) {
        fields[index].range = store(value)
    }

    public mutating func remove(_ name: SIPHeaderName) {
        fields.removeAll { $0.name == name }
    }

    public mutating func remove(at index: Int) {
        fields.remove(at: index)
    }

    private mutating func store(_ value: String) -> Range<Int> {
        let start = storage.count
        storage.append(contentsOf: value.utf8)
        return start..<storage.count
    }

    public func makeIterator() -> AnyIterator<(name: SIPHeaderName, value: String)> {
        var index = 0
        return AnyIterator {
            guard index < fields.count else { return nil }
            defer { index += 1 }
            return (fields[index].name, value(at: index))
        }
    }
}
