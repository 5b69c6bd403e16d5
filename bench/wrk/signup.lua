-- POST /signup with an email and Idempotency-Key that never repeat: the bench passes a
-- random run token (args[1]); each thread adds its number and a counter.
--   wrk ... -s signup.lua URL -- RUN_TOKEN

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

unexpected = 0
local prefix = ""
local counter = 0

function setup(thread)
  common.setup(thread)
end

function init(args)
  prefix = string.format("%s-%d", args[1] or common.random_token(), tid or 0)
end

function request()
  counter = counter + 1
  return common.signup_request(string.format("%s-%d", prefix, counter))
end

function response(status, _, _)
  if status ~= 201 then
    unexpected = unexpected + 1
  end
end

done = common.done
