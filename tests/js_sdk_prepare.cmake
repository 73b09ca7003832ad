# Copies the TypeScript SDK (clients/js) and the web page (web/) into the
# build tree, in the same layout (the page bundles the SDK's sources), where
# CTest installs their npm packages, builds and tests them: the source tree
# stays clean and each build has its own. Never node_modules, dist or
# generated code. Run with -DSRC=<repository> -DDST=<build dir>.
foreach(part clients/js web)
  file(MAKE_DIRECTORY ${DST}/${part})
  file(GLOB files LIST_DIRECTORIES false ${SRC}/${part}/*)
  foreach(f ${files})
    file(COPY ${f} DESTINATION ${DST}/${part})
  endforeach()
  foreach(dir src scripts test public)
    if(EXISTS ${SRC}/${part}/${dir})
      file(REMOVE_RECURSE ${DST}/${part}/${dir})
      file(COPY ${SRC}/${part}/${dir} DESTINATION ${DST}/${part} PATTERN gen EXCLUDE)
    endif()
  endforeach()
endforeach()
