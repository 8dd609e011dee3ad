//! The coldplug index text (`/lib/modules/nullos.index`): never panic; whatever parses survives
//! a text round trip, and load orders of every module are computable.

use modindex::ModuleIndex;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(index) = ModuleIndex::parse(text) {
        assert_eq!(ModuleIndex::parse(&index.to_text()).as_ref(), Ok(&index));
        for m in &index.modules {
            assert!(index.load_order(&m.name).is_ok());
        }
        let _ = index.modules_for_modalias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
    }
}
