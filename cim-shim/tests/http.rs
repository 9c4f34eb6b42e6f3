//! The HTTP front end against hostile and malformed input: every case gets
//! a CIM error or an HTTP 4xx/5xx, and the server keeps serving.

mod common;

use common::*;

const NS: &str = "root/cimv2/storage/iscsitarget";

fn still_serving(srv: &TestServer) {
    let body = imethod("EnumerateClassNames", NS_XML, "");
    let (st, h, b) = post(srv, "EnumerateClassNames", NS, &body);
    assert_eq!(st, 200, "{b}");
    assert_eq!(header(&h, "cimoperation"), Some("MethodResponse"));
    assert!(b.contains("MSISCSITARGET_ReplicationService"), "{b}");
}

#[test]
fn hostile_requests_get_errors_and_server_keeps_serving() {
    let srv = TestServer::start("http", |_| {});
    still_serving(&srv);

    // No credentials / wrong credentials: 401 + WWW-Authenticate.
    let body = imethod("EnumerateClassNames", NS_XML, "");
    let head = format!(
        "POST /cimom HTTP/1.1\nHost: x\nCIMOperation: MethodCall\nCIMMethod: EnumerateClassNames\nCIMObject: {NS}\nContent-Length: {}\nConnection: close\n\n",
        body.len()
    );
    let (st, h, _) = raw(srv.http, &head, body.as_bytes());
    assert_eq!(st, 401);
    assert!(header(&h, "www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let head_bad = head.replace(
        "Host: x\n",
        "Host: x\nAuthorization: Basic YWRtaW46d3Jvbmc=\n",
    );
    let (st, h, _) = raw(srv.http, &head_bad, body.as_bytes());
    assert_eq!(st, 401);
    assert!(header(&h, "www-authenticate").is_some());

    // Malformed XML.
    let (st, h, _) = post(
        &srv,
        "EnumerateClassNames",
        NS,
        "<CIM><MESSAGE ID=\"1\"><SIMPLEREQ>",
    );
    assert_eq!(st, 400);
    assert_eq!(header(&h, "cimerror"), Some("request-not-well-formed"));
    // Entity expansion attempt.
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"xxxxxxxxxx\"><!ENTITY y \"&x;&x;&x;&x;\">]><CIM>&y;</CIM>";
    let (st, h, _) = post(&srv, "EnumerateClassNames", NS, bomb);
    assert_eq!(st, 400);
    assert_eq!(header(&h, "cimerror"), Some("request-not-well-formed"));
    // Deep nesting.
    let deep = format!("<CIM>{}{}</CIM>", "<A>".repeat(5000), "</A>".repeat(5000));
    let (st, _, _) = post(&srv, "EnumerateClassNames", NS, &deep);
    assert_eq!(st, 400);
    // Valid XML, not a CIM request.
    let (st, h, _) = post(
        &srv,
        "EnumerateClassNames",
        NS,
        "<CIM><MESSAGE ID=\"1\"/></CIM>",
    );
    assert_eq!(st, 400);
    assert_eq!(header(&h, "cimerror"), Some("request-not-valid"));
    // Huge body (announced and real).
    let huge = "x".repeat(5 << 20);
    let (st, _, _) = post(&srv, "EnumerateClassNames", NS, &huge);
    assert_eq!(st, 413);
    // A large (1 MiB) but valid body is served.
    let padded = imethod("EnumerateClassNames", NS_XML, "").replace(
        "<SIMPLEREQ>",
        &format!("<SIMPLEREQ><!--{}-->", "p".repeat(1 << 20)),
    );
    let (st, _, b) = post(&srv, "EnumerateClassNames", NS, &padded);
    assert_eq!(st, 200);
    assert!(b.contains("MSISCSITARGET_StorageVolume"), "{b}");
    // CIMMethod header disagreeing with the body.
    let (st, h, _) = post(&srv, "GetClass", NS, &body);
    assert_eq!(st, 400);
    assert_eq!(header(&h, "cimerror"), Some("header-mismatch"));
    // Not a CIM operation / wrong HTTP method / wrong path.
    let (st, h, _) = raw(
        srv.http,
        &format!("POST /cimom HTTP/1.1\nHost: x\nAuthorization: {}\nContent-Length: 0\nConnection: close\n\n", srv.basic()),
        b"",
    );
    assert_eq!(st, 400);
    assert_eq!(header(&h, "cimerror"), Some("unsupported-operation"));
    let (st, _, _) = raw(
        srv.http,
        "GET /cimom HTTP/1.1\nHost: x\nConnection: close\n\n",
        b"",
    );
    assert_eq!(st, 405);
    let (st, _, _) = raw(srv.http, "GARBAGE\n\n", b"");
    assert_eq!(st, 400);

    // Unknown namespace: CIM error 3 in a 200 answer.
    let other_ns = "<LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"nope\"/></LOCALNAMESPACEPATH>";
    let (st, _, b) = post(
        &srv,
        "EnumerateClassNames",
        "root/nope",
        &imethod("EnumerateClassNames", other_ns, ""),
    );
    assert_eq!(st, 200);
    assert!(b.contains("<ERROR CODE=\"3\""), "{b}");
    // Unknown class: 5 for instance operations, 6 for GetClass.
    let p = "<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"Foo_Bar\"/></IPARAMVALUE>";
    let (_, _, b) = post(
        &srv,
        "EnumerateInstances",
        NS,
        &imethod("EnumerateInstances", NS_XML, p),
    );
    assert!(b.contains("<ERROR CODE=\"5\""), "{b}");
    let (_, _, b) = post(&srv, "GetClass", NS, &imethod("GetClass", NS_XML, p));
    assert!(b.contains("<ERROR CODE=\"6\""), "{b}");
    // Pull operations: 7.
    let (_, _, b) = post(
        &srv,
        "OpenEnumerateInstances",
        NS,
        &imethod("OpenEnumerateInstances", NS_XML, p),
    );
    assert!(b.contains("<ERROR CODE=\"7\""), "{b}");
    // Unknown intrinsic parameter and wrongly typed one: 4.
    let (_, _, b) = post(
        &srv,
        "EnumerateClassNames",
        NS,
        &imethod(
            "EnumerateClassNames",
            NS_XML,
            "<IPARAMVALUE NAME=\"Bogus\"><VALUE>1</VALUE></IPARAMVALUE>",
        ),
    );
    assert!(b.contains("<ERROR CODE=\"4\""), "{b}");
    let (_, _, b) = post(
        &srv,
        "EnumerateClassNames",
        NS,
        &imethod(
            "EnumerateClassNames",
            NS_XML,
            "<IPARAMVALUE NAME=\"DeepInheritance\"><VALUE>maybe</VALUE></IPARAMVALUE>",
        ),
    );
    assert!(b.contains("<ERROR CODE=\"4\""), "{b}");

    // Extrinsic: wrong parameter type (untyped, wbemcli style), unknown
    // parameter, unknown method, missing required parameter.
    let svc = "<LOCALINSTANCEPATH>".to_string()
        + NS_XML
        + "<INSTANCENAME CLASSNAME=\"MSISCSITARGET_ReplicationService\"><KEYBINDING NAME=\"SystemCreationClassName\"><KEYVALUE>CIM_ComputerSystem</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"SystemName\"><KEYVALUE>host1</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"CreationClassName\"><KEYVALUE>MSISCSITARGET_ReplicationService</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"Name\"><KEYVALUE>ReplicationService</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH>";
    let vol = "<VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"MSISCSITARGET_StorageVolume\"><KEYBINDING NAME=\"SystemCreationClassName\"><KEYVALUE>CIM_ComputerSystem</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"SystemName\"><KEYVALUE>host1</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"CreationClassName\"><KEYVALUE>MSISCSITARGET_StorageVolume</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"DeviceID\"><KEYVALUE>vol-1</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE>";
    let call = |method: &str, params: &str| {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"9\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"{method}\">{svc}{params}</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
        );
        let obj = "root%2Fcimv2%2Fstorage%2Fiscsitarget%3AMSISCSITARGET_ReplicationService.Name=\"ReplicationService\"";
        post(&srv, method, obj, &doc)
    };
    let (st, _, b) = call(
        "CreateElementReplica",
        &format!("<PARAMVALUE NAME=\"SyncType\"><VALUE>seven</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\">{vol}</PARAMVALUE>"),
    );
    assert_eq!(st, 200);
    assert!(
        b.contains("<ERROR CODE=\"4\"") && b.contains("SyncType"),
        "{b}"
    );
    let (_, _, b) = call(
        "CreateElementReplica",
        &format!("<PARAMVALUE NAME=\"SyncType\"><VALUE>70000</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\">{vol}</PARAMVALUE>"),
    );
    assert!(b.contains("<ERROR CODE=\"4\""), "{b}");
    let (_, _, b) = call(
        "CreateElementReplica",
        "<PARAMVALUE NAME=\"SyncType\"><VALUE>7</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\"><VALUE>vol-1</VALUE></PARAMVALUE>",
    );
    assert!(
        b.contains("<ERROR CODE=\"4\"") && b.contains("SourceElement"),
        "{b}"
    );
    let (_, _, b) = call(
        "CreateElementReplica",
        "<PARAMVALUE NAME=\"Bogus\"><VALUE>1</VALUE></PARAMVALUE>",
    );
    assert!(
        b.contains("<ERROR CODE=\"4\"") && b.contains("Bogus"),
        "{b}"
    );
    let (_, _, b) = call(
        "CreateElementReplica",
        "<PARAMVALUE NAME=\"SyncType\"><VALUE>7</VALUE></PARAMVALUE>",
    );
    assert!(
        b.contains("<ERROR CODE=\"4\"") && b.contains("SourceElement"),
        "{b}"
    );
    let (_, _, b) = call("NoSuchMethod", "");
    assert!(b.contains("<ERROR CODE=\"17\""), "{b}");
    // ReplicationSettingData that is not an instance: ReturnValue 5.
    let (_, _, b) = call(
        "CreateElementReplica",
        &format!("<PARAMVALUE NAME=\"SyncType\"><VALUE>7</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\">{vol}</PARAMVALUE><PARAMVALUE NAME=\"ReplicationSettingData\"><VALUE>fast please</VALUE></PARAMVALUE>"),
    );
    assert!(
        b.contains("<RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>5</VALUE>"),
        "{b}"
    );
    // And a good one, untyped.
    let (_, _, b) = call(
        "CreateElementReplica",
        &format!("<PARAMVALUE NAME=\"SyncType\"><VALUE>7</VALUE></PARAMVALUE><PARAMVALUE NAME=\"SourceElement\">{vol}</PARAMVALUE><PARAMVALUE NAME=\"WaitForCopyState\"><VALUE>4</VALUE></PARAMVALUE>"),
    );
    assert!(
        b.contains("<RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>0</VALUE>"),
        "{b}"
    );
    assert!(b.contains("<PARAMVALUE NAME=\"TargetElement\" PARAMTYPE=\"reference\"><VALUE.REFERENCE><INSTANCEPATH><NAMESPACEPATH><HOST>"), "{b}");

    still_serving(&srv);
}

#[test]
fn slow_body_is_cut_off() {
    let srv = TestServer::start("slow", |c| {
        c.request_timeout = std::time::Duration::from_millis(500)
    });
    let head = format!(
        "POST /cimom HTTP/1.1\nHost: x\nAuthorization: {}\nCIMOperation: MethodCall\nCIMMethod: EnumerateClassNames\nCIMObject: {NS}\nContent-Length: 1000\nConnection: close\n\n",
        srv.basic()
    );
    // Announces 1000 bytes, sends 10, then waits: the server answers 408.
    let (st, _, _) = raw(srv.http, &head, b"<CIM><MESS");
    assert_eq!(st, 408);
    still_serving(&srv);
}
