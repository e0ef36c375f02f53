// Preloaded (node --import ./loopback.mjs) into server-everything's
// streamable HTTP transport, which calls app.listen(PORT) and so would
// listen on every interface: a listen given only a port binds 127.0.0.1,
// as every test server of this project does.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const portOnly = (typeof args[0] === "number" || typeof args[0] === "string") &&
    (args.length === 1 || typeof args[1] === "function");
  if (portOnly) args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
