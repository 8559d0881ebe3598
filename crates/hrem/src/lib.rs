//! relata-hrem
