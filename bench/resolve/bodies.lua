-- wrk script: each request POSTs a random form-encoded body from the file named after "--"
-- (one body a line) to the path given with "-- FILE PATH".
local bodies = {}
local path = "/"
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

init = function(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  path = args[2] or path
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  return wrk.format("POST", path, headers, bodies[math.random(#bodies)])
end
