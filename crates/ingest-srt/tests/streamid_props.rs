//! Stable twin of the `srt_streamid` fuzz target: the stream id parser on
//! arbitrary text never panics, accepts only valid stream keys, and reads
//! back every well-formed id it is given.

use proptest::prelude::*;
use tidewater_core::{Credentials, StreamKey};
use tidewater_ingest_srt::streamid::{Mode, parse};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_parsed_or_refused(text in ".{0,80}") {
        if let Ok(req) = parse(Some(&text)) {
            prop_assert!(StreamKey::parse(&req.key.to_string()).is_ok());
        }
    }

    #[test]
    fn structured_noise_is_parsed_or_refused(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("publish:".to_string()), Just("read:".to_string()), Just("#!::".to_string()),
                Just("r=".to_string()), Just("m=publish".to_string()), Just("m=request".to_string()),
                Just(",".to_string()), Just(":".to_string()), Just("/".to_string()), Just("?".to_string()),
                Just("token=".to_string()), Just("u=".to_string()), "[a-z0-9._-]{0,8}",
            ],
            0..12,
        )
    ) {
        let text = parts.concat();
        if let Ok(req) = parse(Some(&text)) {
            prop_assert!(StreamKey::parse(&req.key.to_string()).is_ok());
        }
    }

    #[test]
    fn well_formed_ids_read_back(
        app in "[a-z][a-z0-9_-]{0,10}",
        stream in "[a-z0-9][a-z0-9_-]{0,10}",
        user in "[a-z]{1,6}",
        pass in "[a-zA-Z0-9]{0,8}",
        publish in any::<bool>(),
    ) {
        let mode = if publish { Mode::Publish } else { Mode::Read };
        let (simple, ac) = if publish { ("publish", "publish") } else { ("read", "request") };
        let key = format!("{app}/{stream}");
        let r = parse(Some(&format!("{simple}:{key}:{user}:{pass}"))).expect("simple form");
        prop_assert_eq!(r.mode, mode);
        prop_assert_eq!(r.key.to_string(), key.clone());
        prop_assert_eq!(r.credentials, Credentials::UserPass { user: user.clone(), pass });
        let r = parse(Some(&format!("#!::r={key},m={ac},u={user}"))).expect("access-control form");
        prop_assert_eq!(r.mode, mode);
        prop_assert_eq!(r.key.to_string(), key);
    }
}
