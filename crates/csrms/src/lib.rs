//! relata-csrms
