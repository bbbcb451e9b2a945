//! The configurations `vecseg compare` runs: each is a concrete
//! `Segment<V, P, I>` type plus how to fill and reopen it. Measurement code
//! (`measure.rs`) is generic over [`Config`], so adding a backend here is
//! all it takes to see it in the table.

use std::path::Path;

use indicatif::ProgressBar;
use vecseg_memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapper,
    PayloadStorage, Result, VectorStorage,
};

use super::dataset::Dataset;
use crate::Segment;

/// One column of the comparison: a segment type and how to build it.
pub trait Config {
    /// Stable name used by `--configs` and in the reports.
    const NAME: &'static str;
    /// One-line description of the storages.
    const DESCRIPTION: &'static str;
    /// Whether the segment lives on disk (and so can be reopened and measured cold).
    const PERSISTENT: bool;
    /// Vector storage.
    type V: VectorStorage<Element = f32>;
    /// Payload storage.
    type P: PayloadStorage;
    /// Id mapper.
    type I: IdMapper;

    /// A segment in `dir` holding every point of `data` (not yet flushed).
    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>>;

    /// Close `segment` and open it again from `dir` (in-memory
    /// configurations return it unchanged).
    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>>;
}

/// Upsert every point of `data` into an appendable segment (version = index + 1).
pub fn fill<V, P, I>(
    segment: &mut Segment<V, P, I>,
    data: &Dataset,
    progress: &ProgressBar,
) -> Result<()>
where
    V: AppendableVectorStorage<Element = f32>,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    progress.set_length(data.len() as u64);
    for i in 0..data.len() {
        segment.upsert(i as u64 + 1, data.id(i), data.vector(i), &data.payloads[i])?;
        if i % 4096 == 0 {
            progress.set_position(i as u64);
        }
    }
    progress.set_position(data.len() as u64);
    Ok(())
}

/// Everything in RAM: `Vec`s and a `BTreeMap`.
pub struct Memory;

impl Config for Memory {
    const NAME: &'static str = "memory";
    const DESCRIPTION: &'static str = "MemoryVectorStorage / MemoryPayloadStorage / MemoryIdMapper";
    const PERSISTENT: bool = false;
    type V = MemoryVectorStorage<f32>;
    type P = MemoryPayloadStorage;
    type I = MemoryIdMapper;

    fn load(
        _: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let mut vectors = MemoryVectorStorage::new(data.dim, data.distance)?;
        vectors.reserve(data.len());
        let mut s = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
        fill(&mut s, data, progress)?;
        Ok(s)
    }

    fn reopen(
        _: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        Ok(segment)
    }
}

/// Names of every configuration, in table order.
pub const ALL: &[&str] = &[Memory::NAME];

/// Something to do with a configuration given as a type parameter.
pub trait ConfigVisitor {
    /// What the visit returns.
    type Output;
    /// Do it with configuration `C`.
    fn visit<C: Config>(self) -> Self::Output;
}

/// Call `visitor` with the configuration called `name`; `None` for an unknown name.
pub fn dispatch<F: ConfigVisitor>(name: &str, visitor: F) -> Option<F::Output> {
    match name {
        n if n == Memory::NAME => Some(visitor.visit::<Memory>()),
        _ => None,
    }
}
