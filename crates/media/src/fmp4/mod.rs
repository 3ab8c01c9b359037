//! fMP4 / CMAF: init segments and moof+mdat fragments.
