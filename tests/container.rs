//! The container: write → parse round trips (property tests) and the error kind of every
//! kind of damage.

use lic::container::{types, write_chunk, ColorType, Container, Header, ModelKind, SIGNATURE};
use lic::FormatError;
use proptest::prelude::*;

fn header(width: u32, height: u32, quality: u16) -> Header {
    Header {
        width,
        height,
        color: ColorType::Rgb,
        model: ModelKind::Cw,
        weights_id: [1, 2, 3, 4, 5, 6, 7, 8],
        quality,
        tile: 0,
    }
}

fn file(h: &Header, chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, types::HEAD, &h.to_bytes());
    for (k, d) in chunks {
        write_chunk(&mut out, *k, d);
    }
    write_chunk(&mut out, types::DONE, &[]);
    out
}

proptest! {
    #[test]
    fn round_trip(w in 1u32..=65536, h in 1u32..=65536, q: u16,
                  payload in proptest::collection::vec(any::<u8>(), 0..2000),
                  extra in proptest::collection::vec(any::<u8>(), 0..100)) {
        let hd = header(w, h, q);
        let bytes = file(&hd, &[(types::CWLT, payload.clone()), (*b"zNOT", extra.clone())]);
        let c = Container::parse(&bytes).unwrap();
        prop_assert_eq!(&c.header, &hd);
        prop_assert_eq!(c.find(types::CWLT).unwrap(), Some(payload.as_slice()));
        // The unknown ancillary chunk is kept and skippable.
        prop_assert_eq!(c.chunks.len(), 2);
        prop_assert_eq!(lic::container::read_header(&bytes).unwrap(), hd);
    }

    #[test]
    fn every_truncation_is_an_error(cut in 0usize..200) {
        let bytes = file(&header(64, 48, 1000), &[(types::CWLT, vec![7u8; 100])]);
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(Container::parse(&bytes[..cut]).is_err());
    }

    #[test]
    fn every_bit_flip_is_caught(pos in 0usize..10_000, bit in 0u8..8) {
        let bytes = file(&header(64, 48, 1000), &[(types::CWLT, (0..150u8).collect())]);
        let mut bad = bytes.clone();
        let pos = pos % bad.len();
        bad[pos] ^= 1 << bit;
        prop_assert!(Container::parse(&bad).is_err(), "flip at byte {} bit {} not caught", pos, bit);
    }
}

#[test]
fn error_kinds() {
    let good = file(&header(64, 48, 1000), &[(types::CWLT, vec![1, 2, 3, 4])]);
    assert!(Container::parse(&good).is_ok());

    assert_eq!(
        Container::parse(b"\x89PNG\r\n\x1a\n").unwrap_err(),
        FormatError::BadSignature
    );
    assert_eq!(
        Container::parse(&good[..5]).unwrap_err(),
        FormatError::Truncated("the signature")
    );
    assert!(matches!(
        Container::parse(&good[..good.len() - 3]).unwrap_err(),
        FormatError::Truncated(_)
    ));

    // A flipped payload byte names the chunk whose CRC failed.
    let mut bad = good.clone();
    let at = good.len() - 12 - 12 + 8 + 1; // inside CWLT's payload
    bad[at] ^= 0x40;
    assert_eq!(
        Container::parse(&bad).unwrap_err(),
        FormatError::Crc("CWLT".into())
    );

    // Version 2 (with a correct CRC) is refused as such.
    let mut hd = header(64, 48, 1000).to_bytes();
    hd[0] = 2;
    let mut v2 = SIGNATURE.to_vec();
    write_chunk(&mut v2, types::HEAD, &hd);
    write_chunk(&mut v2, types::DONE, &[]);
    assert_eq!(
        Container::parse(&v2).unwrap_err(),
        FormatError::UnsupportedVersion(2)
    );

    // An unknown critical chunk is refused; trailing data after DONE is refused.
    let crit = file(&header(64, 48, 1000), &[(*b"ZZZZ", vec![])]);
    assert_eq!(
        Container::parse(&crit).unwrap_err(),
        FormatError::UnknownCritical("ZZZZ".into())
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        Container::parse(&trailing).unwrap_err(),
        FormatError::Structure(_)
    ));

    // Zero dimensions are refused.
    let zero = file(&header(0, 48, 1000), &[]);
    assert!(matches!(
        Container::parse(&zero).unwrap_err(),
        FormatError::Invalid { .. }
    ));

    // A huge length is refused before anything is read or allocated.
    let mut huge = good.clone();
    let p = 8 + 12 + lic::container::HEAD_LEN;
    huge[p..p + 4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    assert!(matches!(
        Container::parse(&huge).unwrap_err(),
        FormatError::TooLong(_)
    ));
}
