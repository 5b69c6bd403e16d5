-- GET /users/{id} of random ids from a file (one id a line), loaded once per thread.
--   wrk ... -s read.lua URL -- IDS_FILE

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

unexpected = 0
local requests = {}

function setup(thread)
  common.setup(thread)
end

function init(args)
  common.seed(tid)
  requests = common.read_requests(args[1])
end

function request()
  return requests[math.random(#requests)]
end

function response(status, _, _)
  if status ~= 200 then
    unexpected = unexpected + 1
  end
end

done = common.done
