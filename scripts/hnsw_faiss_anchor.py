#!/usr/bin/env python3
"""FAISS anchor for `cargo bench --bench hnsw`: IndexHNSWFlat with the same
m (16) and ef_construction (100) on the e5 set, or on a set the bench
wrote with `VECSEG_HNSW_DUMP=dir` (inner product, vectors normalised), build time on the given thread count, then recall@10 and QPS
at the same ef values, one search thread, one query at a time (like the
bench). FAISS is only an anchor here, never a dependency of the crates:

    pip install faiss-cpu numpy
    python3 scripts/hnsw_faiss_anchor.py [../shared/data/e5-dev] [build threads]
"""
import sys
import time

import faiss
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].copy().view(dtype)


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/e5-dev"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    base = read_vecs(f"{data}/base.fvecs", np.float32)
    queries = read_vecs(f"{data}/queries.fvecs", np.float32)
    truth = read_vecs(f"{data}/gt.ivecs", np.int32)[:, :10]
    n, dim = base.shape
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(int(dim), 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t
    links = index.hnsw.neighbors.size()  # slots incl. padding (-1)
    name = data.rstrip("/").split("/")[-1]
    print(f"faiss {name} {n} x {dim}: HNSW m 16, ef_construct 100, built in {build:.1f} s "
          f"on {threads} threads ({n / build:.0f} points/s), {links * 4 / n:.1f} link-slot bytes/point")
    faiss.omp_set_num_threads(1)
    print("  ef   recall@10   QPS")
    for ef in [16, 32, 64, 128, 256]:
        index.hnsw.efSearch = ef
        found = 0
        t = time.perf_counter()
        for q in range(len(queries)):
            _, ids = index.search(queries[q:q + 1], 10)
            found += len(set(ids[0]) & set(truth[q]))
        secs = time.perf_counter() - t
        print(f"  {ef:>3}   {found / (10 * len(queries)):>9.3f} {len(queries) / secs:>6.0f}")


if __name__ == "__main__":
    main()
