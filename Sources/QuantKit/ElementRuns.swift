/// Memory-order traversal for the reference path. Elements are visited in runs of contiguous
/// addresses whose scale groups advance by a fixed stride, so strided groups (per-channel along the
/// last axis, blocks along axis 0) are read row by row instead of one cache line per element.
struct ElementRun {
    var start: Int
    var count: Int
    var groupBase: Int
    /// 0: the whole run is one group; 1: consecutive elements belong to consecutive groups.
    var groupStride: Int
}

extension QuantPlan {
    enum RunShape {
        case tensorChunks      // one group (per tensor): fixed-size chunks
        case wholeGroups       // each group is one contiguous run
        case rows              // row (o, d) holds `inner` contiguous elements
        case outerRows         // per-axis on the last axis: row o holds one element of every group
    }

    static let chunk = 65536

    var runShape: RunShape {
        if groupCount == 1 && params.layout != .bnb4 { return .tensorChunks }
        if groupsAreContiguous { return .wholeGroups }
        if params.granularity == .perAxis && inner == 1 { return .outerRows }
        return .rows
    }

    var runCount: Int {
        switch runShape {
        case .tensorChunks: return (count + Self.chunk - 1) / Self.chunk
        case .wholeGroups: return groupCount
        case .rows: return outer * dim
        case .outerRows: return outer
        }
    }

    func run(_ i: Int) -> ElementRun {
        switch runShape {
        case .tensorChunks:
            return ElementRun(start: i * Self.chunk, count: min(Self.chunk, count - i * Self.chunk), groupBase: 0, groupStride: 0)
        case .wholeGroups:
            let span = span(ofGroup: i)
            return ElementRun(start: span.base, count: span.elementCount, groupBase: i, groupStride: 0)
        case .rows:
            let o = i / dim, d = i % dim
            if params.granularity == .perAxis { return ElementRun(start: i * inner, count: inner, groupBase: d, groupStride: 0) }
            return ElementRun(start: i * inner, count: inner, groupBase: (o * blocksPerDim + d / block) * inner, groupStride: 1)
        case .outerRows:
            return ElementRun(start: i * dim, count: dim, groupBase: 0, groupStride: 1)
        }
    }

    /// Calls body for every element with its group, in memory order, split over threads.
    /// Inlined so that `body` is inlined into the loop too (a call per element costs more than
    /// the element's work).
    @inline(__always)
    func forEachElement(threads: Int, _ body: (_ element: Int, _ group: Int) -> Void) {
        forEachRun(threads: threads) { r in
            for k in 0..<r.count { body(r.start + k, r.groupBase + k * r.groupStride) }
        }
    }

    /// Calls body for every run, in memory order, split over threads.
    @inline(__always)
    func forEachRun(threads: Int, _ body: (ElementRun) -> Void) {
        let runs = runCount
        let elementsPerRun = max(1, count / max(runs, 1))
        Parallel.forEachChunk(count: runs, threads: threads, minChunk: max(1, 16384 / elementsPerRun)) { range in
            for i in range { body(run(i)) }
        }
    }

    /// Min and max of every group, each group owned by one thread (no merging of partial results
    /// except for the per-tensor group, whose chunk results are combined in order).
    /// Runs whose consecutive elements belong to consecutive groups: per-axis on the last axis, and
    /// blocks along an inner axis. `kernels` (per-lane min/max) then read them a vector at a time.
    var runsAdvanceOneGroupPerElement: Bool {
        runShape == .outerRows || (runShape == .rows && params.granularity == .blocked)
    }

    /// Min and max of each run i in `runs` into lo[i], hi[i] (empty runs leave them), with the ISA
    /// kernel. Its finiteness check is not needed: callers checked already.
    private func runRanges(_ runs: Range<Int>, _ kernels: BlockKernels, _ base: UnsafePointer<Float>,
                           into lo: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Float>) {
        let poison = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        poison.initialize(repeating: 0, count: 16)
        defer { poison.deallocate() }
        for i in runs {
            let r = run(i)
            if r.count > 0 { (lo[i], hi[i]) = kernels.minMax(base + r.start, r.count, poison) }
        }
    }

    /// `kernels`: an ISA's min/max kernels, which give the scalar scan's values on finite input
    /// (callers check finiteness first).
    func groupRanges(_ x: UnsafeBufferPointer<Float>, threads: Int, kernels: BlockKernels? = nil,
                     into lo: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Float>) {
        lo.update(repeating: .greatestFiniteMagnitude, count: groupCount)
        hi.update(repeating: -.greatestFiniteMagnitude, count: groupCount)
        @inline(__always) func scan(_ start: Int, _ n: Int, _ g: Int) {
            var (l, h) = (lo[g], hi[g])
            for k in start..<(start + n) { l = min(l, x[k]); h = max(h, x[k]) }
            (lo[g], hi[g]) = (l, h)
        }
        switch runShape {
        case .tensorChunks:
            let chunks = runCount
            let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * chunks)
            defer { partial.deallocate() }
            partial.initialize(repeating: .greatestFiniteMagnitude, count: chunks)
            (partial + chunks).initialize(repeating: -.greatestFiniteMagnitude, count: chunks)
            Parallel.forEachChunk(count: chunks, threads: threads) { range in
                guard let kernels, let base = x.baseAddress else {
                    for c in range {
                        let r = run(c)
                        for k in r.start..<(r.start + r.count) { partial[c] = min(partial[c], x[k]); partial[chunks + c] = max(partial[chunks + c], x[k]) }
                    }
                    return
                }
                runRanges(range, kernels, base, into: partial, partial + chunks)
            }
            for c in 0..<chunks { lo[0] = min(lo[0], partial[c]); hi[0] = max(hi[0], partial[chunks + c]) }
        case .wholeGroups:
            Parallel.forEachChunk(count: groupCount, threads: threads, minChunk: max(1, 16384 / max(maxGroupSize, 1))) { groups in
                guard let kernels, let base = x.baseAddress else {
                    for g in groups { let r = run(g); scan(r.start, r.count, g) }
                    return
                }
                runRanges(groups, kernels, base, into: lo, hi)
            }
        case .outerRows:
            // Threads own column ranges (groups); each walks every row's slice of its columns.
            Parallel.forEachChunk(count: dim, threads: threads, minChunk: 64) { columns in
                for o in 0..<outer {
                    let row = o * dim
                    if let kernels, let base = x.baseAddress {
                        kernels.minMaxPerLane(base + row + columns.lowerBound, columns.count, lo + columns.lowerBound, hi + columns.lowerBound)
                    } else {
                        for d in columns { lo[d] = min(lo[d], x[row + d]); hi[d] = max(hi[d], x[row + d]) }
                    }
                }
            }
        case .rows:
            // Threads own slabs: a block of rows (blocked) or one index d (per-axis); inside a
            // slab every row's `inner` elements map to the slab's groups.
            let blocked = params.granularity == .blocked
            let slabs = blocked ? outer * blocksPerDim : dim
            Parallel.forEachChunk(count: slabs, threads: threads, minChunk: max(1, 16384 / max(1, maxGroupSize * (blocked ? inner : 1)))) { range in
                for slab in range {
                    if blocked {
                        let o = slab / blocksPerDim, b = slab % blocksPerDim
                        let groupBase = slab * inner
                        for d in (b * block)..<min(dim, (b + 1) * block) {
                            let rowStart = (o * dim + d) * inner
                            if let kernels, let base = x.baseAddress {
                                kernels.minMaxPerLane(base + rowStart, inner, lo + groupBase, hi + groupBase)
                                continue
                            }
                            for r in 0..<inner {
                                lo[groupBase + r] = min(lo[groupBase + r], x[rowStart + r])
                                hi[groupBase + r] = max(hi[groupBase + r], x[rowStart + r])
                            }
                        }
                    } else {
                        for o in 0..<outer { scan((o * dim + slab) * inner, inner, slab) }
                    }
                }
            }
        }
    }
}
