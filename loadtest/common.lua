-- Shared by the wrk scripts in loadtest/: loads gen.py's body files, pre-builds every request,
-- and prints a summary (with p99.9 and a machine-readable WRKJSON line) when wrk is done.
--
-- A script describes its traffic and calls install():
--   local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
--   common.install({ { file = "beacon-800.ndjson", path = "/v1/beacons", weight = 1 } })
--
-- Each kind: file (in DATA, default loadtest/data), path, weight (default 1), content_type
-- (default application/json), encoding (Content-Encoding, optional), b64 (lines are base64 of
-- the body), framed (the file holds bodies that may have newlines, each as its length in ASCII
-- digits, a newline, then its bytes: gen.py's otlp-100.frames), events (events per body;
-- default: counted as the body's "session_id" keys, or 1),
-- resession (rewrite the 8-digit session number per request, from SESSIONS sessions).
--
-- Environment: INLET_TOKEN (default devtoken), DATA (body directory), SESSIONS (default
-- 100000), LIMIT (use at most this many bodies per kind), STATUSES=0 (do not count statuses
-- per code; wrk still counts non-2xx answers).

local M = {}

M.dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

function M.data_dir()
  return os.getenv("DATA") or (M.dir .. "data")
end

function M.read_lines(path)
  local f = io.open(path, "rb")
  if not f then
    error(path .. " not found: run loadtest/gen.py first (or set DATA)")
  end
  local lines, limit = {}, tonumber(os.getenv("LIMIT") or "0")
  for line in f:lines() do
    if #line > 0 then
      lines[#lines + 1] = line
      if limit > 0 and #lines >= limit then break end
    end
  end
  f:close()
  if #lines == 0 then error(path .. " is empty") end
  return lines
end

-- A framed file's bodies (see install's `framed`), LIMIT as for lines.
function M.read_frames(path)
  local f = io.open(path, "rb")
  if not f then
    error(path .. " not found: run loadtest/gen.py first (or set DATA)")
  end
  local bodies, limit = {}, tonumber(os.getenv("LIMIT") or "0")
  while true do
    local size = f:read("*l")
    if not size or #size == 0 then break end
    local body = f:read(tonumber(size))
    if not body or #body ~= tonumber(size) then error(path .. ": truncated frame") end
    bodies[#bodies + 1] = body
    if limit > 0 and #bodies >= limit then break end
  end
  f:close()
  if #bodies == 0 then error(path .. " is empty") end
  return bodies
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_INDEX = {}
for i = 1, #B64 do B64_INDEX[B64:byte(i)] = i - 1 end

function M.b64decode(s)
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64_INDEX[s:byte(i)]
    if v then
      bits = bits * 64 + v
      nbits = nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        local byte = math.floor(bits / 2 ^ nbits)
        out[#out + 1] = string.char(byte)
        bits = bits - byte * 2 ^ nbits
      end
    end
  end
  return table.concat(out)
end

local function count_events(body)
  local n = 0
  for _ in body:gmatch('"session_id":') do n = n + 1 end
  return math.max(n, 1)
end

local threads = {}
local kinds

function M.install(spec)
  kinds = spec
  local token = os.getenv("INLET_TOKEN") or "devtoken"
  local sessions = tonumber(os.getenv("SESSIONS") or "100000")
  local count_statuses = os.getenv("STATUSES") ~= "0"

  function setup(thread)
    thread:set("tid", #threads)
    threads[#threads + 1] = thread
  end

  -- Per thread: the requests, pre-built; a weighted schedule of kinds.
  -- lt_sent, lt_events and lt_statuses are globals so done() can read them with thread:get().
  local reqs, schedule = {}, {}
  lt_sent, lt_events, lt_statuses = 0, 0, {}

  function init(args)
    math.randomseed(os.time() + (tid or 0) * 7919)
    for k, kind in ipairs(kinds) do
      local headers = {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = kind.content_type or "application/json",
      }
      if kind.encoding then headers["Content-Encoding"] = kind.encoding end
      local built = { pos = (tid or 0) * 7919 }
      local path = M.data_dir() .. "/" .. kind.file
      for _, line in ipairs(kind.framed and M.read_frames(path) or M.read_lines(path)) do
        local body = kind.b64 and M.b64decode(line) or line
        local req = wrk.format("POST", kind.path, headers, body)
        local entry = { req = req, events = kind.events or count_events(body) }
        if kind.resession then
          local a, b = req:find('"session_id":"sess%-%d%d%d%d%d%d%d%d"')
          if a then
            entry.prefix, entry.suffix = req:sub(1, b - 9), req:sub(b)
          end
        end
        built[#built + 1] = entry
      end
      reqs[k] = built
      for _ = 1, (kind.weight or 1) do schedule[#schedule + 1] = k end
    end
    -- Shuffle so a mix interleaves its kinds.
    for i = #schedule, 2, -1 do
      local j = math.random(i)
      schedule[i], schedule[j] = schedule[j], schedule[i]
    end
  end

  function request()
    lt_sent = lt_sent + 1
    local built = reqs[schedule[(lt_sent % #schedule) + 1]]
    built.pos = built.pos + 1
    local entry = built[(built.pos % #built) + 1]
    lt_events = lt_events + entry.events
    if entry.prefix then
      return entry.prefix .. string.format("%08d", math.random(0, sessions - 1)) .. entry.suffix
    end
    return entry.req
  end

  if count_statuses then
    function response(status, headers, body)
      lt_statuses[status] = (lt_statuses[status] or 0) + 1
      if status >= 300 and status ~= 429 and status ~= 503 and lt_statuses[status] <= 3 then
        print("unexpected status " .. status .. ": " .. body:sub(1, 300))
      end
    end
  end

  function done(summary, latency, requests)
    local total_events, by_status = 0, {}
    for _, t in ipairs(threads) do
      total_events = total_events + (t:get("lt_events") or 0)
      local s = t:get("lt_statuses")
      if type(s) == "table" then
        for code, c in pairs(s) do by_status[code] = (by_status[code] or 0) + c end
      end
    end
    local secs = summary.duration / 1e6
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.timeout
    -- events counts requests sent, including the few still in flight when wrk stopped: scale
    -- it to completed requests.
    local sent = 0
    for _, t in ipairs(threads) do sent = sent + (t:get("lt_sent") or 0) end
    if sent > 0 then total_events = total_events * summary.requests / sent end
    local parts = {}
    for code, c in pairs(by_status) do parts[#parts + 1] = string.format('"%d":%d', code, c) end
    io.write(string.format("p50 %.2fms  p99 %.2fms  p99.9 %.2fms  events/s %.0f\n",
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency:percentile(99.9) / 1000, total_events / secs))
    io.write(string.format(
      'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"events":%.0f,"eps":%.1f,' ..
      '"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,"non2xx":%d,' ..
      '"socket_errors":%d,"timeouts":%d,"statuses":{%s}}\n',
      summary.requests, secs, summary.requests / secs, total_events, total_events / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency:percentile(99.9) / 1000, latency.max / 1000, e.status, errors, e.timeout,
      table.concat(parts, ",")))
  end
end

return M
