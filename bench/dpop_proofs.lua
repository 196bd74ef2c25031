-- wrk script for the DPoP variant: every request carries the next proof from a
-- file of fresh, distinct proofs (a proof is good for one request only).
-- Arguments: <proofs file> <access token>
local proofs, next_proof, headers = {}, 0, {}

function init(args)
  for line in io.lines(args[1]) do
    proofs[#proofs + 1] = line
  end
  headers["Host"] = wrk.headers["Host"]
  headers["authorization"] = "DPoP " .. args[2]
end

function request()
  next_proof = next_proof + 1
  headers["dpop"] = proofs[next_proof]
  return wrk.format(nil, nil, headers)
end
