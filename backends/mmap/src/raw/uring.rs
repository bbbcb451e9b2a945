//! io_uring batch reader (to be written).
