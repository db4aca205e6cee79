vcl 4.1;

import xkey;

backend default {
    .host = "127.0.0.1";
    .port = "8000";
}

acl purgers {
    "127.0.0.1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        # The keys to purge, space-separated: freshcache.edge.purge_keys(tag) for each tag.
        return (synth(200, "Purged " + xkey.purge(req.http.xkey-purge)));
    }
}

sub vcl_backend_response {
    # A page freshcache labelled with keys is kept until a purge removes it: its purgers send
    # one after every write that changes it. Every other response follows the built-in VCL (a
    # page marked private or "Surrogate-Control: no-store" is not kept).
    if (beresp.http.xkey) {
        set beresp.ttl = 1d;
        set beresp.grace = 0s;
        return (deliver);
    }
}

sub vcl_deliver {
    # The keys name tables and rows: clients need not see them.
    unset resp.http.xkey;
}
