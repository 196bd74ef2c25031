-- wrk script for the DPoP variants: every request carries the next proof from
-- a file of fresh, distinct proofs (a proof is good for one request only).
-- Arguments: <proofs file> <access token>
-- When the proofs run out the thread stops, and bench/run.py, seeing as many
-- requests as proofs, runs the round again with more (the requests still in
-- flight reuse the last proof and are answered as replays).
local proofs, next_proof, headers = {}, 0, {}

function init(args)
  for line in io.lines(args[1]) do
    proofs[#proofs + 1] = line
  end
  headers["Host"] = wrk.headers["Host"]
  headers["authorization"] = "DPoP " .. args[2]
end

function request()
  if next_proof >= #proofs then
    wrk.thread:stop()
  else
    next_proof = next_proof + 1
  end
  headers["dpop"] = proofs[next_proof]
  return wrk.format(nil, nil, headers)
end
