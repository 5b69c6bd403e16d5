-- Shared by the bench's wrk scripts (loaded with dofile, once per Lua state).
--
-- setup() numbers the threads; done() prints one line the bench parses:
--   BENCH_RESULT {"requests":..,"duration_us":..,"p50_us":..,..}
-- "unexpected" counts responses whose status the script did not expect (each thread's
-- response() adds to its global `unexpected`); wrk's own status errors (>= 400) are a
-- subset of them, so errors = socket errors + unexpected.

local common = {}

local threads = {}

function common.setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

-- A token that differs between runs even when the bench passed none.
function common.random_token()
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  return string.format("%08x", math.random(0, 0x7fffffff))
end

function common.seed(tid)
  math.randomseed(os.time() * 100 + (tid or 0) * 7919 + math.floor(os.clock() * 1000000))
end

function common.read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  if #lines == 0 then
    error("no ids in " .. path)
  end
  return lines
end

-- GET /users/{id} requests for every id in the file (one id a line), formatted once.
function common.read_requests(path)
  local requests = {}
  for i, id in ipairs(common.read_lines(path)) do
    requests[i] = wrk.format("GET", "/users/" .. id)
  end
  return requests
end

-- A POST /signup whose email and Idempotency-Key are both `key` (unique per request).
local signup_headers = { ["Content-Type"] = "application/json" }

function common.signup_request(key)
  signup_headers["Idempotency-Key"] = key
  local body = '{"name":"Bench User","email":"' .. key ..
    '@example.com","password":"bench-password-1"}'
  return wrk.format("POST", "/signup", signup_headers, body)
end

function common.done(summary, latency, requests)
  local unexpected = 0
  for _, thread in ipairs(threads) do
    unexpected = unexpected + (tonumber(thread:get("unexpected")) or 0)
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local status_errors = e.status
  if unexpected < status_errors then
    unexpected = status_errors
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"status":%d,"unexpected":%d,"errors":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, status_errors, unexpected,
    socket_errors + unexpected))
end

return common
