//! Codec parameter parsing: H.264/H.265 parameter sets, decoder configuration records, AAC AudioSpecificConfig and ADTS, Annex-B and length-prefixed NAL units.
