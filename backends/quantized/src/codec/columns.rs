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

/// Where byte `j` of code `i` of a group of `len`-byte codes sits: the
/// group's row (`0..GROUP`) and the byte in that row.
#[inline]
pub fn position(len: usize, i: usize, j: usize) -> (usize, usize) {
    let at = j * GROUP + i;
    (at / len, at % len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_round_trip_and_positions_agree() {
        for len in [1usize, 7, 28, 32, 33, 136] {
            let rows: Vec<u8> = (0..GROUP * len).map(|x| (x * 31 % 251) as u8).collect();
            let mut columns = vec![0u8; rows.len()];
            rows_to_columns(&rows, len, &mut columns);
            let mut back = vec![0u8; rows.len()];
            columns_to_rows(&columns, len, &mut back);
            assert_eq!(back, rows, "len {len}");
            for i in 0..GROUP {
                for j in 0..len {
                    let (r, c) = position(len, i, j);
                    assert_eq!(columns[r * len + c], rows[i * len + j], "len {len}");
                }
            }
        }
    }
}
