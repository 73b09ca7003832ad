# Copies the TypeScript SDK's sources (clients/js, without node_modules,
# dist or generated code) into the build tree, where CTest installs its npm
# packages, builds and tests it: the source tree stays clean and each build
# has its own. Run with -DSRC=<clients/js> -DDST=<build dir>.
file(MAKE_DIRECTORY ${DST})
foreach(item package.json package-lock.json tsconfig.json)
  file(COPY ${SRC}/${item} DESTINATION ${DST})
endforeach()
foreach(dir src scripts test)
  file(REMOVE_RECURSE ${DST}/${dir})
  file(COPY ${SRC}/${dir} DESTINATION ${DST} PATTERN gen EXCLUDE)
endforeach()
