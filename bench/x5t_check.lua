-- The hand-written alternative to cnf-guard for `make bench`: the token's
-- cnf.x5t#S256 (verified by jwt_authn) must be the SHA-256 of the client
-- certificate Envoy validated. Strict like cnf-guard: 43 base64url characters,
-- canonical, no padding. Plain Lua 5.1 (no bit library) so it runs on LuaJIT
-- and on Lua builds alike.

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local SEXTET = {}
for i = 1, #ALPHABET do
  SEXTET[ALPHABET:byte(i)] = i - 1
end

-- 43 base64url characters -> 64 lowercase hex digits, or nil if not canonical.
local function x5t_to_hex(x5t)
  if type(x5t) ~= "string" or #x5t ~= 43 then
    return nil
  end
  local out = {}
  -- Ten groups of four characters give 30 bytes.
  for i = 1, 40, 4 do
    local a, b, c, d = SEXTET[x5t:byte(i)], SEXTET[x5t:byte(i + 1)], SEXTET[x5t:byte(i + 2)], SEXTET[x5t:byte(i + 3)]
    if not (a and b and c and d) then
      return nil
    end
    local n = ((a * 64 + b) * 64 + c) * 64 + d
    out[#out + 1] = string.format("%02x%02x%02x", math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
  end
  -- The last three characters give 2 bytes; the 2 bits left over must be zero.
  local a, b, c = SEXTET[x5t:byte(41)], SEXTET[x5t:byte(42)], SEXTET[x5t:byte(43)]
  if not (a and b and c) or c % 4 ~= 0 then
    return nil
  end
  local n = (a * 64 + b) * 64 + c
  out[#out + 1] = string.format("%02x%02x", math.floor(n / 1024), math.floor(n / 4) % 256)
  return table.concat(out)
end

local function deny(handle, reason)
  handle:respond({
    [":status"] = "401",
    ["content-type"] = "text/plain",
    ["www-authenticate"] = 'Bearer error="invalid_token", error_description="' .. reason .. '"',
  }, reason .. "\n")
end

function envoy_on_request(handle)
  local info = handle:streamInfo()
  local verified = info:dynamicMetadata():get("envoy.filters.http.jwt_authn")
  local payload = verified and verified["payload"]
  local cnf = payload and payload["cnf"]
  local x5t = type(cnf) == "table" and cnf["x5t#S256"] or nil
  if x5t == nil then
    return deny(handle, "token not bound to a certificate")
  end
  local expected = x5t_to_hex(x5t)
  if expected == nil then
    return deny(handle, "malformed x5t#S256")
  end
  local ssl = info:downstreamSslConnection()
  local presented = ssl and ssl:sha256PeerCertificateDigest()
  if presented == nil or presented == "" then
    return deny(handle, "client certificate required")
  end
  if presented ~= expected then
    return deny(handle, "token bound to another certificate")
  end
end
