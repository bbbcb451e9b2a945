//! [`MemoryPayloadStorage`]: payloads in a `Vec` indexed by offset.

use vecseg_traits::{
    AppendablePayloadStorage, Payload, PayloadStorage, PayloadStorageRead, PointOffset, Result,
};

/// Payloads held as parsed JSON objects in RAM.
#[derive(Debug, Clone, Default)]
pub struct MemoryPayloadStorage {
    payloads: Vec<Payload>,
    count: usize,
}

impl MemoryPayloadStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload at `offset` without cloning (`None` when empty).
    pub fn get_ref(&self, offset: PointOffset) -> Option<&Payload> {
        self.payloads.get(offset as usize).filter(|p| !p.is_empty())
    }
}

impl PayloadStorageRead for MemoryPayloadStorage {
    fn get(&self, offset: PointOffset) -> Result<Payload> {
        Ok(self.get_ref(offset).cloned().unwrap_or_default())
    }

    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()> {
        for (offset, p) in self.payloads.iter().enumerate() {
            if !p.is_empty() && !f(offset as PointOffset, p.clone())? {
                break;
            }
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.count
    }
}

impl PayloadStorage for MemoryPayloadStorage {
    fn clear(&mut self, offset: PointOffset) -> Result<Payload> {
        let old = self
            .payloads
            .get_mut(offset as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        if !old.is_empty() {
            self.count -= 1;
        }
        Ok(old)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl AppendablePayloadStorage for MemoryPayloadStorage {
    fn overwrite(&mut self, offset: PointOffset, payload: &Payload) -> Result<()> {
        let index = offset as usize;
        if index >= self.payloads.len() {
            self.payloads.resize_with(index + 1, Payload::new);
        }
        let slot = &mut self.payloads[index];
        self.count = self.count + usize::from(!payload.is_empty()) - usize::from(!slot.is_empty());
        *slot = payload.clone();
        Ok(())
    }
}
