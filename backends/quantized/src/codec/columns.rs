//! The column layout of codes: the codes of [`GROUP`] consecutive slots
//! stored byte column by byte column, so a scan kernel loads one byte
//! position of 32 codes with one 32-byte load instead of transposing rows
//! in registers (FAISS's fast-scan layout).
//!
//! A group of 32 codes of `len` bytes occupies the same `32 · len` bytes
//! as its rows would (the slots `32 g .. 32 g + 32` of a byte storage
//! whose "vectors" are `len` bytes), ordered so that byte `j` of code `i`
//! is at `j · 32 + i`. Which slots are in groups is a property of the
//! quantized storage (`Quantized` keeps the end of its column prefix);
//! the helpers here only move bytes.

/// Codes per column group (the binary kernels' block).
pub const GROUP: usize = 32;

/// Write the `GROUP` codes of `rows` (`len` bytes each, row after row)
/// into `columns` as columns.
pub fn rows_to_columns(rows: &[u8], len: usize, columns: &mut [u8]) {
    for (i, row) in rows.chunks_exact(len).take(GROUP).enumerate() {
        for (j, &b) in row.iter().enumerate() {
            columns[j * GROUP + i] = b;
        }
    }
}

/// Write the `GROUP` codes of `columns` back as rows of `len` bytes.
pub fn columns_to_rows(columns: &[u8], len: usize, rows: &mut [u8]) {
    for (i, row) in rows.chunks_exact_mut(len).take(GROUP).enumerate() {
        code_from_columns(columns, i, row);
    }
}

/// Code `i` of a group stored as `columns`, into `code` (its length is the
/// code length).
pub fn code_from_columns(columns: &[u8], i: usize, code: &mut [u8]) {
    for (j, b) in code.iter_mut().enumerate() {
        *b = columns[j * GROUP + i];
    }
}

/// Where code `i` of a group of `len`-byte codes lies: for each of the
/// group's slots (rows) holding some of its bytes, in order, the slot
/// (`0..GROUP`) and the code's bytes `j` in it; byte `j` sits at
/// `(32 j + i) % len` of that slot.
pub fn spans(len: usize, i: usize) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    let mut j = 0;
    std::iter::from_fn(move || {
        if j >= len {
            return None;
        }
        let row = (j * GROUP + i) / len;
        // The first byte past this row: `32 j + i ≥ (row + 1) · len`.
        let end = ((row + 1) * len).saturating_sub(i).div_ceil(GROUP).min(len);
        let span = (row, j..end);
        j = end;
        Some(span)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_round_trip_and_spans_agree() {
        for len in [1usize, 7, 28, 32, 33, 136] {
            let rows: Vec<u8> = (0..GROUP * len).map(|x| (x * 31 % 251) as u8).collect();
            let mut columns = vec![0u8; rows.len()];
            rows_to_columns(&rows, len, &mut columns);
            let mut back = vec![0u8; rows.len()];
            columns_to_rows(&columns, len, &mut back);
            assert_eq!(back, rows, "len {len}");
            for i in 0..GROUP {
                let mut next = 0;
                for (r, js) in spans(len, i) {
                    assert_eq!(js.start, next, "len {len}: spans are consecutive");
                    assert!(!js.is_empty() && r < GROUP);
                    for j in js.clone() {
                        let at = j * GROUP + i;
                        assert_eq!(at / len, r, "len {len}: byte {j} in slot {r}");
                        assert_eq!(columns[at], rows[i * len + j], "len {len}");
                    }
                    next = js.end;
                }
                assert_eq!(next, len, "len {len}: every byte covered");
            }
        }
    }
}
