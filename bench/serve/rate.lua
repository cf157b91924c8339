-- wrk script for bench/serve.sh's FIXED=wrk: POST one JSON payload (the
-- file named by $BODY_FILE) at about a fixed rate. Each connection waits a
-- random time (exponential, mean $THINK_MS milliseconds) after each answer
-- before its next request. wrk's timers tick in whole milliseconds, so the
-- waits are rounded up or down at random, keeping the mean, and the
-- connections whose waits end in the same tick send together: bursts, not
-- a Poisson process (bench/load makes that one). wrk times each request
-- from its send.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()

local mean = assert(tonumber(os.getenv("THINK_MS")), "THINK_MS must be a number")

function init(args)
	-- Each thread its own random stream.
	math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end

function delay()
	local t = -mean * math.log(1 - math.random())
	local n = math.floor(t)
	if math.random() < t - n then
		n = n + 1
	end
	return n
end
