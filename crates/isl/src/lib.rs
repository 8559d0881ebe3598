//! relata-isl
