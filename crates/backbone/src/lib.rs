//! relata-backbone
