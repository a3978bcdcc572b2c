-- wrk script: each request takes a random path from the file named after "--".
local paths = {}

init = function(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
