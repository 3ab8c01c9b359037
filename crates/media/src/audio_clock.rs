//! AAC/Opus presentation times rebuilt from sample counts.
