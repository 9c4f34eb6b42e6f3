//! SendTargets discovery: All and a named target, with the portal address
//! the initiator dialled when the target listens on a wildcard address.

mod common;

use common::{parse_text, text, Conn, Server};
use ironlun_target::pdu::{self, InitiatorPdu, Stage, TextRequest, RESERVED_TAG};

fn discovery_login(c: &mut Conn) {
    let keys = [
        ("InitiatorName", "iqn.2026-11.test:disc"),
        ("SessionType", "Discovery"),
        ("AuthMethod", "None"),
    ];
    let r = c.login_step(Stage::Security, Stage::Operational, &keys);
    assert_eq!(r.h.word36 >> 16, 0, "{:?}", parse_text(&r.data));
    let r = c.login_step(
        Stage::Operational,
        Stage::FullFeature,
        &[("HeaderDigest", "None"), ("DataDigest", "None")],
    );
    assert_eq!(r.h.word36 >> 16, 0, "{:?}", parse_text(&r.data));
}

fn send_targets(c: &mut Conn, what: &str) -> Vec<(String, String)> {
    let itt = c.next_itt();
    let req = InitiatorPdu::Text(TextRequest {
        immediate: true,
        final_: true,
        continue_: false,
        lun: 0,
        itt,
        ttt: RESERVED_TAG,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    });
    c.send(&req, &text(&[("SendTargets", what)])).unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r.h.opcode, pdu::opcode::TEXT_RESPONSE);
    assert_eq!(r.h.itt, itt);
    parse_text(&r.data)
}

#[test]
fn send_targets_answers_the_dialled_address_on_a_wildcard_portal() {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("ironlun-it-disc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("d.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[target]]\niqn = \"iqn.2026-11.org.ironlun:a\"\nportals = [\"0.0.0.0:{port}\"]\n[[target.lun]]\nid = 0\nsize = \"16M\"\n\
             [[target]]\niqn = \"iqn.2026-11.org.ironlun:b\"\nportals = [\"0.0.0.0:{port}\"]\n[[target.lun]]\nid = 0\nsize = \"16M\"\n\
             [[target]]\niqn = \"iqn.2026-11.org.ironlun:hidden\"\nportals = [\"0.0.0.0:{port}\"]\nallowed_initiators = [\"iqn.2026-11.test:someone-else\"]\n[[target.lun]]\nid = 0\nsize = \"16M\"\n"
        ),
    )
    .unwrap();
    let listen = format!("0.0.0.0:{port}");
    let server = Server::start_in(
        dir.join("srv"),
        &["--config", cfg.to_str().unwrap(), "--iscsi-listen", &listen],
    );
    let addr = server.addr;
    let mut c = Conn::connect(addr);
    discovery_login(&mut c);
    let all = send_targets(&mut c, "All");
    let names: Vec<&str> = all
        .iter()
        .filter(|(k, _)| k == "TargetName")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        names,
        ["iqn.2026-11.org.ironlun:a", "iqn.2026-11.org.ironlun:b"],
        "{all:?}"
    );
    let want = format!("127.0.0.1:{port},1");
    assert!(
        all.iter()
            .filter(|(k, _)| k == "TargetAddress")
            .all(|(_, v)| *v == want),
        "{all:?}"
    );
    let one = send_targets(&mut c, "iqn.2026-11.org.ironlun:b");
    assert_eq!(
        one,
        vec![
            (
                "TargetName".to_string(),
                "iqn.2026-11.org.ironlun:b".to_string()
            ),
            ("TargetAddress".to_string(), want.clone())
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
