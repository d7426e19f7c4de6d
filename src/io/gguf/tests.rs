use half::f16;

use super::value::{T_ARRAY, T_BOOL, T_F64, T_STRING, T_U8};
use super::*;

/// xorshift64: a fixed, dependency-free stream of test bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// The f32 an f16-stored scale stands for.
fn hv(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

fn one_tensor(ty: GgmlType, dims: &[usize], data: &[u8]) -> Vec<f32> {
    let bytes = write_gguf(&[], &[("t", dims, ty, data)]);
    let file = GgufFile::parse(&bytes).expect("valid file");
    file.dequantize("t").expect("supported type")
}

fn assert_same(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "value {i}: got {g}, want {w}");
    }
}

#[test]
fn q4_0_matches_formula() {
    let mut rng = Rng(1);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for d in [0.5f32, -1.25, 3.0e-3] {
        // Values 0..16 in both halves, then random; the stored d is an f16.
        let v: Vec<u8> = (0..32)
            .map(|j| if j < 16 { j as u8 } else { rng.below(16) as u8 })
            .collect();
        data.extend(h(d));
        data.extend((0..16).map(|j| v[j] | (v[j + 16] << 4)));
        want.extend(v.iter().map(|&q| (q as f32 - 8.0) * hv(d)));
    }
    assert_same(&one_tensor(GgmlType::Q4_0, &[32, 3], &data), &want);
}

#[test]
fn q4_1_matches_formula() {
    let mut rng = Rng(2);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for (d, m) in [(0.25f32, -1.0f32), (-0.75, 2.5), (1.0e-2, 0.0)] {
        let v: Vec<u8> = (0..32)
            .map(|j| {
                if j < 16 {
                    15 - j as u8
                } else {
                    rng.below(16) as u8
                }
            })
            .collect();
        data.extend(h(d));
        data.extend(h(m));
        data.extend((0..16).map(|j| v[j] | (v[j + 16] << 4)));
        want.extend(v.iter().map(|&q| q as f32 * hv(d) + hv(m)));
    }
    assert_same(&one_tensor(GgmlType::Q4_1, &[96], &data), &want);
}

#[test]
fn q8_0_matches_formula() {
    let mut rng = Rng(3);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for d in [0.5f32, -2.0, 7.0e-4] {
        let v: Vec<i8> = (0..32)
            .map(|j| match j {
                0 => -128,
                1 => 127,
                2 => -1,
                3 => 0,
                _ => rng.next() as i8,
            })
            .collect();
        data.extend(h(d));
        data.extend(v.iter().map(|&q| q as u8));
        want.extend(v.iter().map(|&q| q as f32 * hv(d)));
    }
    assert_same(&one_tensor(GgmlType::Q8_0, &[32, 3], &data), &want);
}

/// Pack eight 6-bit scales and mins the way ggml's `quantize_row_q4_K_ref` does.
fn pack_k4_scales(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = sc[j];
            s[j + 4] = mn[j];
        } else {
            s[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
            s[j - 4] |= (sc[j] >> 4) << 6;
            s[j] |= (mn[j] >> 4) << 6;
        }
    }
    s
}

/// Scales and mins that use every bit, including the high two bits of pairs 4..8.
const K_SCALES: [[u8; 8]; 2] = [
    [1, 63, 32, 17, 45, 8, 0, 60],
    [63, 0, 5, 40, 33, 62, 16, 47],
];
const K_MINS: [[u8; 8]; 2] = [
    [0, 63, 33, 5, 48, 12, 31, 62],
    [7, 63, 0, 50, 1, 32, 63, 20],
];

#[test]
fn q4_k_matches_formula() {
    let mut rng = Rng(4);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for (k, (d, dmin)) in [(0.125f32, 0.5f32), (-0.0625, 0.03)]
        .into_iter()
        .enumerate()
    {
        let (sc, mn) = (K_SCALES[k], K_MINS[k]);
        let l: Vec<u8> = (0..256)
            .map(|i| if i < 16 { i as u8 } else { rng.below(16) as u8 })
            .collect();
        data.extend(h(d));
        data.extend(h(dmin));
        data.extend(pack_k4_scales(&sc, &mn));
        for n in 0..4 {
            data.extend((0..32).map(|j| l[64 * n + j] | (l[64 * n + j + 32] << 4)));
        }
        for (i, &q) in l.iter().enumerate() {
            let s = i / 32;
            want.push(hv(d) * sc[s] as f32 * q as f32 - hv(dmin) * mn[s] as f32);
        }
    }
    assert_eq!(data.len(), 2 * 144);
    assert_same(&one_tensor(GgmlType::Q4_K, &[512], &data), &want);
}

#[test]
fn q5_k_matches_formula() {
    let mut rng = Rng(5);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for (k, (d, dmin)) in [(0.25f32, 0.125f32), (-0.01, 1.5)].into_iter().enumerate() {
        let (sc, mn) = (K_SCALES[k], K_MINS[k]);
        let l: Vec<u8> = (0..256)
            .map(|i| if i < 32 { i as u8 } else { rng.below(32) as u8 })
            .collect();
        // ggml's packing: low nibbles as in Q4_K, the fifth bit of the value at 64n+j
        // (and 64n+j+32) in bit 2n (and 2n+1) of qh[j].
        let mut qh = [0u8; 32];
        let mut qs = [0u8; 128];
        for n in 0..4 {
            for j in 0..32 {
                let (l1, l2) = (l[64 * n + j], l[64 * n + j + 32]);
                qh[j] |= ((l1 >> 4) << (2 * n)) | ((l2 >> 4) << (2 * n + 1));
                qs[32 * n + j] = (l1 & 0xF) | ((l2 & 0xF) << 4);
            }
        }
        data.extend(h(d));
        data.extend(h(dmin));
        data.extend(pack_k4_scales(&sc, &mn));
        data.extend(qh);
        data.extend(qs);
        for (i, &q) in l.iter().enumerate() {
            let s = i / 32;
            want.push(hv(d) * sc[s] as f32 * q as f32 - hv(dmin) * mn[s] as f32);
        }
    }
    assert_eq!(data.len(), 2 * 176);
    assert_same(&one_tensor(GgmlType::Q5_K, &[256, 2], &data), &want);
}

#[test]
fn q6_k_matches_formula() {
    let mut rng = Rng(6);
    let mut data = Vec::new();
    let mut want = Vec::new();
    for d in [0.0625f32, -0.3] {
        let l: Vec<u8> = (0..256)
            .map(|i| if i < 64 { i as u8 } else { rng.below(64) as u8 })
            .collect();
        let sc: [i8; 16] = [
            -128, 127, -1, 0, 1, 64, -64, 33, -33, 2, 100, -100, 5, -7, 90, -90,
        ];
        // ggml's packing (quantize_row_q6_K_ref).
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for n in 0..2 {
            for j in 0..32 {
                let b = 128 * n;
                let (a, bb, c, e) = (l[b + j], l[b + j + 32], l[b + j + 64], l[b + j + 96]);
                ql[64 * n + j] = (a & 0xF) | ((c & 0xF) << 4);
                ql[64 * n + j + 32] = (bb & 0xF) | ((e & 0xF) << 4);
                qh[32 * n + j] = (a >> 4) | ((bb >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
            }
        }
        data.extend(ql);
        data.extend(qh);
        data.extend(sc.iter().map(|&s| s as u8));
        data.extend(h(d));
        for (i, &q) in l.iter().enumerate() {
            want.push(hv(d) * sc[i / 16] as f32 * (q as f32 - 32.0));
        }
    }
    assert_eq!(data.len(), 2 * 210);
    assert_same(&one_tensor(GgmlType::Q6_K, &[256, 1, 2], &data), &want);
}

fn every_value() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("u8", GgufValue::U8(200)),
        ("i8", GgufValue::I8(-100)),
        ("u16", GgufValue::U16(60_000)),
        ("i16", GgufValue::I16(-30_000)),
        ("u32", GgufValue::U32(4_000_000_000)),
        ("i32", GgufValue::I32(-2_000_000_000)),
        ("f32", GgufValue::F32(1.0e-5)),
        ("bool", GgufValue::Bool(true)),
        ("string", GgufValue::String("héllo, wörld ✓".into())),
        ("u64", GgufValue::U64(u64::MAX)),
        ("i64", GgufValue::I64(i64::MIN)),
        ("f64", GgufValue::F64(-1.0e300)),
        ("a.u8", GgufValue::Array(GgufArray::U8(vec![0, 1, 255]))),
        ("a.i8", GgufValue::Array(GgufArray::I8(vec![-128, 127]))),
        ("a.u16", GgufValue::Array(GgufArray::U16(vec![1, 65535]))),
        ("a.i16", GgufValue::Array(GgufArray::I16(vec![-1, 2]))),
        ("a.u32", GgufValue::Array(GgufArray::U32(vec![7]))),
        (
            "a.i32",
            GgufValue::Array(GgufArray::I32(vec![1, 2, 3, 6, -1])),
        ),
        ("a.f32", GgufValue::Array(GgufArray::F32(vec![0.5, -0.25]))),
        (
            "a.bool",
            GgufValue::Array(GgufArray::Bool(vec![true, false])),
        ),
        (
            "a.string",
            GgufValue::Array(GgufArray::String(vec![
                "a".into(),
                String::new(),
                "Ġthe".into(),
            ])),
        ),
        ("a.u64", GgufValue::Array(GgufArray::U64(vec![u64::MAX, 0]))),
        ("a.i64", GgufValue::Array(GgufArray::I64(vec![i64::MIN]))),
        ("a.f64", GgufValue::Array(GgufArray::F64(vec![1.5, 2.5]))),
        ("a.empty", GgufValue::Array(GgufArray::F32(Vec::new()))),
    ]
}

/// A small valid file with every value type and a tensor of every supported type (plus one
/// unsupported); the quantised blocks hold arbitrary bytes.
fn sample_file() -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let q8: Vec<u8> = h(0.5).into_iter().chain((0..32).map(|i| i as u8)).collect();
    let mut tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)> = vec![
        (
            "f32".into(),
            vec![3, 2],
            GgmlType::F32,
            f32_bytes(&[1.0, -2.0, 3.5, 0.0, -0.0, 1e-3]),
        ),
        (
            "f16".into(),
            vec![5],
            GgmlType::F16,
            f16_bytes(&[1.0, -2.0, 0.5, 65504.0, -0.125]),
        ),
        (
            "bf16".into(),
            vec![1, 3],
            GgmlType::BF16,
            bf16_bytes(&[1.0, -3.0, 256.0]),
        ),
        ("q8".into(), vec![32], GgmlType::Q8_0, q8),
        ("q2k".into(), vec![256], GgmlType::Q2_K, vec![0; 84]),
    ];
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let data = (0..ty.type_size()).map(|_| rng.next() as u8).collect();
        tensors.push((ty.name().to_lowercase(), vec![ty.block_size()], ty, data));
    }
    let tensors: Vec<(&str, &[usize], GgmlType, &[u8])> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.as_slice(), *t, b.as_slice()))
        .collect();
    write_gguf(&every_value(), &tensors)
}

#[test]
fn round_trip_metadata_and_tensors() {
    let bytes = sample_file();
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
    let want = every_value();
    let got: Vec<(&str, &GgufValue)> = file.metadata().collect();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        assert_eq!(*gv, wv);
    }
    let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "f32", "f16", "bf16", "q8", "q2k", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"
        ]
    );
    for t in file.tensors() {
        assert_eq!(t.byte_range.start % 32, 0, "{} is aligned", t.name);
        assert_eq!(t.offset % 32, 0);
    }
    let info = file.tensor_info("f32").unwrap();
    assert_eq!(info.dims, [3, 2]);
    assert_eq!(info.shape(), [2, 3]);
    assert_eq!(info.element_count, 6);
    assert_eq!(info.ggml_type, GgmlType::F32);
    assert_eq!(info.byte_range.len(), 24);
    assert_same(
        &file.dequantize("f32").unwrap(),
        &[1.0, -2.0, 3.5, 0.0, -0.0, 1e-3],
    );
    assert_same(
        &file.dequantize("f16").unwrap(),
        &[1.0, -2.0, 0.5, 65504.0, -0.125],
    );
    assert_same(&file.dequantize("bf16").unwrap(), &[1.0, -3.0, 256.0]);
    let q8: Vec<f32> = (0..32).map(|i| i as f32 * 0.5).collect();
    assert_same(&file.dequantize("q8").unwrap(), &q8);
    assert_eq!(file.tensor_data("q2k").unwrap().len(), 84);
    assert!(file.tensor_info("nope").is_none());
    assert!(matches!(
        file.dequantize("nope"),
        Err(GgufError::NoSuchTensor(_))
    ));
}

#[test]
fn custom_alignment_is_honoured() {
    let meta = [("general.alignment", GgufValue::U32(64))];
    let a = f32_bytes(&[1.0; 3]);
    let b = f32_bytes(&[2.0; 5]);
    let bytes = write_gguf(
        &meta,
        &[
            ("a", &[3], GgmlType::F32, &a),
            ("b", &[5], GgmlType::F32, &b),
        ],
    );
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.tensor_info("b").unwrap().offset, 64);
    assert_same(&file.dequantize("b").unwrap(), &[2.0; 5]);
}

#[test]
fn accessors_convert_and_refuse() {
    let bytes = sample_file();
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.get_u64("u8").unwrap(), Some(200));
    assert_eq!(file.get_u64("u32").unwrap(), Some(4_000_000_000));
    assert_eq!(file.get_u64("u64").unwrap(), Some(u64::MAX));
    assert_eq!(file.get_u64("missing").unwrap(), None);
    assert!(matches!(
        file.get_u64("i8"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.get_u64("f32"),
        Err(GgufError::WrongValueType { .. })
    ));
    assert_eq!(file.get_i64("i64").unwrap(), Some(i64::MIN));
    assert!(file.get_i64("u64").is_err());
    assert_eq!(file.get_f64("f32").unwrap(), Some(f64::from(1.0e-5f32)));
    assert_eq!(file.get_f64("i16").unwrap(), Some(-30_000.0));
    assert_eq!(file.get_f64("f64").unwrap(), Some(-1.0e300));
    assert!(file.get_f64("string").is_err());
    assert_eq!(file.get_str("string").unwrap(), Some("héllo, wörld ✓"));
    assert!(file.get_str("u8").is_err());
    assert_eq!(file.get_bool("bool").unwrap(), Some(true));
    assert!(file.get_bool("u8").is_err());
    let strings = file.get_string_array("a.string").unwrap().unwrap();
    assert_eq!(strings, ["a", "", "Ġthe"]);
    let err = file.get_string_array("a.i32").unwrap_err();
    assert_eq!(
        err.to_string(),
        "metadata key `a.i32` holds an array of signed 32-bit integers, but saeplay expected an array of strings"
    );
    assert_eq!(
        file.get_i64_array("a.i32").unwrap(),
        Some(vec![1, 2, 3, 6, -1])
    );
    assert_eq!(file.get_i64_array("a.u8").unwrap(), Some(vec![0, 1, 255]));
    assert!(file.get_i64_array("a.u64").is_err());
    assert!(file.get_i64_array("a.f32").is_err());
    assert!(file.get_i64_array("u8").is_err());
    assert_eq!(file.get_f32_array("a.f32").unwrap(), Some(vec![0.5, -0.25]));
    assert_eq!(file.get_f32_array("a.f64").unwrap(), Some(vec![1.5, 2.5]));
    assert!(file.get_f32_array("a.string").is_err());
    assert!(matches!(file.get("a.empty"), Some(GgufValue::Array(a)) if a.is_empty()));
}

#[test]
fn unsupported_type_is_named() {
    let q2k = vec![0u8; 84];
    let bytes = write_gguf(
        &[],
        &[("blk.0.attn_q.weight", &[256], GgmlType::Q2_K, &q2k)],
    );
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(
        file.dequantize("blk.0.attn_q.weight")
            .unwrap_err()
            .to_string(),
        "tensor `blk.0.attn_q.weight` is stored as Q2_K, which saeplay cannot read yet \
         (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)"
    );
}

#[test]
fn type_table_is_consistent() {
    for id in 0..64 {
        if let Some(t) = GgmlType::from_id(id) {
            assert_eq!(t.id(), id);
            assert!(t.block_size() > 0 && t.type_size() > 0);
        }
    }
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!(GgmlType::from_id(31), None);
    assert_eq!(GgmlType::Q6_K.to_string(), "Q6_K");
}

#[test]
fn truncated_anywhere_is_refused() {
    let bytes = sample_file();
    let file = GgufFile::parse(&bytes).unwrap();
    let data_end = file
        .tensors()
        .iter()
        .map(|t| t.byte_range.end)
        .max()
        .unwrap();
    for cut in 0..data_end {
        let err = GgufFile::parse(&bytes[..cut]).expect_err("a cut file is refused");
        assert!(!err.to_string().is_empty());
    }
    // Only the padding after the last tensor may go.
    for cut in data_end..=bytes.len() {
        assert!(GgufFile::parse(&bytes[..cut]).is_ok());
    }
    // Without tensors the file ends with its last value (a non-zero byte here), then padding.
    let mut meta = every_value();
    meta.push(("last", GgufValue::U8(7)));
    let meta_only = write_gguf(&meta, &[]);
    let end = meta_only.iter().rposition(|&b| b == 7).unwrap() + 1;
    for cut in 0..end {
        assert!(GgufFile::parse(&meta_only[..cut]).is_err());
    }
    assert!(GgufFile::parse(&meta_only[..end]).is_ok());
    let one = write_gguf(&[], &[("w", &[8], GgmlType::F32, &f32_bytes(&[0.0; 8]))]);
    assert_eq!(
        GgufFile::parse(&one[..24 + 9 + 2]).unwrap_err().to_string(),
        "the GGUF file ends early: tensor info 0 (`w`) is cut off"
    );
    assert_eq!(
        GgufFile::parse(&bytes[..30]).unwrap_err().to_string(),
        "the GGUF file ends early: metadata key 0 is cut off"
    );
}

/// A header followed by whatever a test appends.
fn raw(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend(version.to_le_bytes());
    v.extend(tensors.to_le_bytes());
    v.extend(kvs.to_le_bytes());
    v
}

fn push_str(v: &mut Vec<u8>, s: &[u8]) {
    v.extend((s.len() as u64).to_le_bytes());
    v.extend(s);
}

fn parse_err(bytes: &[u8]) -> GgufError {
    let err = GgufFile::parse(bytes).expect_err("refused");
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn bad_headers_are_refused() {
    assert_eq!(parse_err(b"GGML\x03\0\0\0"), GgufError::NotGguf);
    assert_eq!(parse_err(b"PK"), GgufError::NotGguf);
    assert!(matches!(parse_err(b""), GgufError::Truncated(_)));
    assert!(matches!(parse_err(b"GG"), GgufError::Truncated(_)));
    assert_eq!(parse_err(&raw(1, 0, 0)), GgufError::Version1);
    assert_eq!(parse_err(&raw(4, 0, 0)), GgufError::UnsupportedVersion(4));
    assert_eq!(parse_err(&raw(0x0300_0000, 0, 0)), GgufError::BigEndian);
    assert!(parse_err(&raw(1, 0, 0)).to_string().contains("version 1"));
    assert!(GgufFile::parse(&raw(2, 0, 0)).is_ok());
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    assert!(matches!(
        parse_err(&raw(3, 1 << 60, 0)),
        GgufError::TooMany { .. }
    ));
    assert!(matches!(
        parse_err(&raw(3, 0, u64::MAX)),
        GgufError::TooMany { .. }
    ));
    assert!(matches!(
        parse_err(&raw(3, 1000, 0)),
        GgufError::Truncated(_)
    ));
    assert!(matches!(
        parse_err(&raw(3, 0, 1000)),
        GgufError::Truncated(_)
    ));

    // An array of 2^60 strings, and of 2^60 bytes, in a tiny file.
    for element in [T_STRING, T_U8, T_F64] {
        let mut v = raw(3, 0, 1);
        push_str(&mut v, b"tokenizer.ggml.tokens");
        v.extend(T_ARRAY.to_le_bytes());
        v.extend(element.to_le_bytes());
        v.extend((1u64 << 60).to_le_bytes());
        v.extend([0u8; 64]);
        let err = parse_err(&v);
        assert!(matches!(err, GgufError::CountTooLarge { count, .. } if count == 1 << 60));
    }

    // A key whose declared length is far past the end.
    let mut v = raw(3, 0, 1);
    v.extend((1u64 << 60).to_le_bytes());
    v.extend([b'a'; 40]);
    assert!(matches!(parse_err(&v), GgufError::Truncated(_)));

    // A tensor whose dimensions multiply past usize.
    let mut v = raw(3, 1, 0);
    push_str(&mut v, b"w");
    v.extend(2u32.to_le_bytes());
    v.extend((1u64 << 40).to_le_bytes());
    v.extend((1u64 << 40).to_le_bytes());
    v.extend(0u32.to_le_bytes());
    v.extend(0u64.to_le_bytes());
    assert!(matches!(parse_err(&v), GgufError::TooLarge { .. }));

    // One huge dimension: its bytes overflow, or lie past the end.
    for dim in [u64::MAX, 1 << 61, 1 << 30] {
        let mut v = raw(3, 1, 0);
        push_str(&mut v, b"w");
        v.extend(1u32.to_le_bytes());
        v.extend(dim.to_le_bytes());
        v.extend(0u32.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        let err = parse_err(&v);
        assert!(
            matches!(
                err,
                GgufError::TooLarge { .. } | GgufError::DataOutOfRange { .. }
            ),
            "{err}"
        );
    }

    // Five dimensions.
    let mut v = raw(3, 1, 0);
    push_str(&mut v, b"w");
    v.extend(5u32.to_le_bytes());
    v.extend([1u8; 64]);
    assert!(matches!(
        parse_err(&v),
        GgufError::TooManyDims { n_dims: 5, .. }
    ));
}

#[test]
fn bad_values_are_refused() {
    let kv = |type_id: u32, body: &[u8]| {
        let mut v = raw(3, 0, 1);
        push_str(&mut v, b"k");
        v.extend(type_id.to_le_bytes());
        v.extend(body);
        v
    };
    assert!(matches!(
        parse_err(&kv(13, &[0; 8])),
        GgufError::UnknownValueType { type_id: 13, .. }
    ));
    let nested: Vec<u8> = T_ARRAY
        .to_le_bytes()
        .into_iter()
        .chain(1u64.to_le_bytes())
        .collect();
    assert!(matches!(
        parse_err(&kv(T_ARRAY, &nested)),
        GgufError::NestedArray(_)
    ));
    let mut bad_str = Vec::new();
    push_str(&mut bad_str, b"ok\xFF");
    assert_eq!(
        parse_err(&kv(T_STRING, &bad_str)).to_string(),
        "the value of metadata key `k` in the GGUF file is not valid UTF-8 text"
    );
    let mut arr: Vec<u8> = T_STRING
        .to_le_bytes()
        .into_iter()
        .chain(2u64.to_le_bytes())
        .collect();
    push_str(&mut arr, b"fine");
    push_str(&mut arr, b"\xC3");
    assert!(
        parse_err(&kv(T_ARRAY, &arr))
            .to_string()
            .contains("string 1 of metadata key `k`")
    );
    let mut v = raw(3, 0, 1);
    push_str(&mut v, b"\xFFkey");
    v.extend(T_U8.to_le_bytes());
    v.push(0);
    assert!(matches!(parse_err(&v), GgufError::InvalidUtf8(_)));
    // Booleans take any byte, as in C.
    let file_bytes = kv(T_BOOL, &[2]);
    assert_eq!(
        GgufFile::parse(&file_bytes).unwrap().get_bool("k").unwrap(),
        Some(true)
    );
}

#[test]
fn bad_alignment_is_refused() {
    for (value, bad) in [
        (GgufValue::U32(0), true),
        (GgufValue::U32(48), true),
        (GgufValue::I32(-32), true),
        (GgufValue::String("32".into()), true),
        (GgufValue::U64(1), false),
        (GgufValue::U8(16), false),
    ] {
        let bytes = write_gguf(&[("general.alignment", value)], &[]);
        assert_eq!(GgufFile::parse(&bytes).is_err(), bad);
    }
}

/// Where a tensor's info continues after its name (n_dims, dims, type, offset).
fn after_name(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    at + needle.len()
}

fn patch(bytes: &mut [u8], at: usize, new: &[u8]) {
    bytes[at..at + new.len()].copy_from_slice(new);
}

#[test]
fn bad_tensor_infos_are_refused() {
    let data = f32_bytes(&[1.0; 8]);
    let good = write_gguf(&[], &[("w", &[8], GgmlType::F32, &data)]);
    let at = after_name(&good, "w");
    // n_dims (4), one dim (8), type (4), offset (8).
    let (type_at, offset_at) = (at + 12, at + 16);

    let mut v = good.clone();
    patch(&mut v, offset_at, &4u64.to_le_bytes());
    assert!(matches!(
        parse_err(&v),
        GgufError::Misaligned { offset: 4, .. }
    ));

    let mut v = good.clone();
    patch(&mut v, offset_at, &(32u64 * 1000).to_le_bytes());
    assert!(matches!(parse_err(&v), GgufError::DataOutOfRange { .. }));

    let mut v = good.clone();
    patch(&mut v, offset_at, &(u64::MAX - 31).to_le_bytes());
    assert!(matches!(parse_err(&v), GgufError::DataOutOfRange { .. }));

    for id in [99u32, 31, 4] {
        let mut v = good.clone();
        patch(&mut v, type_at, &id.to_le_bytes());
        let err = parse_err(&v);
        assert!(matches!(err, GgufError::UnknownType { .. }));
        assert!(err.to_string().contains(&format!("ggml type {id}")));
    }

    let mut v = good.clone();
    patch(&mut v, at - 1, b"\xFF");
    assert!(matches!(parse_err(&v), GgufError::InvalidUtf8(_)));

    let short = &good[..good.len() - 8];
    assert!(matches!(parse_err(short), GgufError::DataOutOfRange { .. }));

    let twice = write_gguf(
        &[],
        &[
            ("w", &[8], GgmlType::F32, &data),
            ("w", &[8], GgmlType::F32, &data),
        ],
    );
    assert_eq!(parse_err(&twice), GgufError::DuplicateTensor("w".into()));
    let keys = write_gguf(&[("k", GgufValue::U8(1)), ("k", GgufValue::U8(2))], &[]);
    assert_eq!(parse_err(&keys), GgufError::DuplicateKey("k".into()));

    let q4 = vec![0u8; 18 * 3];
    let partial = write_gguf(&[], &[("q", &[48, 2], GgmlType::Q4_0, &q4)]);
    assert!(matches!(
        parse_err(&partial),
        GgufError::PartialBlock {
            row: 48,
            block: 32,
            ..
        }
    ));

    // Names in messages are escaped and cut short.
    let long = format!("a\nb{}", "x".repeat(200));
    let twice = write_gguf(
        &[],
        &[
            (&long, &[1], GgmlType::F32, &data[..4]),
            (&long, &[1], GgmlType::F32, &data[..4]),
        ],
    );
    let message = parse_err(&twice).to_string();
    assert!(
        message.contains("a\\nb") && message.contains('…') && message.len() < 200,
        "{message}"
    );
}

#[test]
fn zero_sized_and_scalar_tensors() {
    let scalar = f32_bytes(&[4.5]);
    let bytes = write_gguf(
        &[],
        &[
            ("s", &[], GgmlType::F32, &scalar),
            ("e", &[0, 7], GgmlType::Q4_K, &[]),
        ],
    );
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.dequantize("s").unwrap(), [4.5]);
    assert_eq!(file.dequantize("e").unwrap(), Vec::<f32>::new());
}

#[test]
fn mutated_files_never_panic() {
    let base = sample_file();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let tables = GgufFile::parse(&base).unwrap().data_offset() as usize;
    let (mut ok, mut refused) = (0, 0);
    for round in 0..4000 {
        let mut v = base.clone();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            let i = rng.below(v.len() as u64) as usize;
            // Even rounds damage only the header and tables, where damage matters most.
            let i = if round % 2 == 0 { i % tables } else { i };
            v[i] ^= (1 + rng.below(255)) as u8;
        }
        if round % 7 == 0 {
            v.truncate(rng.below(v.len() as u64 + 1) as usize);
        }
        match GgufFile::parse(&v) {
            Ok(file) => {
                ok += 1;
                for t in file.tensors() {
                    match file.dequantize(&t.name) {
                        Ok(values) => assert_eq!(values.len(), t.element_count),
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
                for (key, _) in file.metadata() {
                    let errors = [
                        file.get_u64(key).err(),
                        file.get_i64(key).err(),
                        file.get_f64(key).err(),
                        file.get_str(key).err(),
                        file.get_bool(key).err(),
                        file.get_string_array(key).err(),
                        file.get_i64_array(key).err(),
                        file.get_f32_array(key).err(),
                    ];
                    for e in errors.into_iter().flatten() {
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
}
