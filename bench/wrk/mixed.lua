-- 90% GET /users/{id} of random ids from a file, 10% POST /signup with unique emails
-- (every tenth request of each thread).
--   wrk ... -s mixed.lua URL -- IDS_FILE RUN_TOKEN

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

unexpected = 0
local reads = {}
local prefix = ""
local counter = 0
local signups = 0

function setup(thread)
  common.setup(thread)
end

function init(args)
  common.seed(tid)
  reads = common.read_requests(args[1])
  prefix = string.format("%s-%d", args[2] or common.random_token(), tid or 0)
end

function request()
  counter = counter + 1
  if counter % 10 ~= 0 then
    return reads[math.random(#reads)]
  end
  signups = signups + 1
  return common.signup_request(string.format("%s-%d", prefix, signups))
end

-- A response does not say which request it answers: 200 (read) and 201 (signup) are both
-- expected.
function response(status, _, _)
  if status ~= 200 and status ~= 201 then
    unexpected = unexpected + 1
  end
end

done = common.done
