//! Marker types for `warden_guard::RequireScope`, so each route's required
//! scope is part of its handler's signature.

warden_guard::scope!(pub Me = "me");
warden_guard::scope!(pub UsersRead = "users:read");
warden_guard::scope!(pub UsersWrite = "users:write");
warden_guard::scope!(pub TokensIntrospect = "tokens:introspect");
warden_guard::scope!(pub ClientsRead = "clients:read");
warden_guard::scope!(pub ClientsWrite = "clients:write");
