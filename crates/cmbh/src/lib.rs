//! relata-cmbh
